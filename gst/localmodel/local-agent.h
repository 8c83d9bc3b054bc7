/* gst-phone-agent: the local model's brain, a scripted agent read from JSON
 * (format in docs/local-model.md): intents matched on words of the caller's
 * transcript, spoken replies, tool calls whose output the next reply can
 * quote, end_call / transfer_to_human actions, a greeting and a fallback. */
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "local-engine.h"

typedef struct _JsonNode JsonNode;

namespace pa::local {

struct ToolCallPlan {
  std::string call_id;
  std::string name;
  std::string arguments; /* JSON object text */
};

/* What one response should contain. */
struct Plan {
  std::string say;                 /* spoken text; empty: no message item */
  std::vector<ToolCallPlan> calls; /* function calls after the message */
  std::string intent;              /* matched intent, "greeting", "fallback", ... */
};

class PA_LOCAL_API Agent {
public:
  ~Agent();
  /* NULL with @error (a sentence naming the problem) on bad input. */
  static std::shared_ptr<const Agent> load_file(const std::string &path, std::string &error);
  static std::shared_ptr<const Agent> load_json(const std::string &json, std::string &error);
  /* The built-in receptionist (the same as agents/receptionist.json). */
  static std::shared_ptr<const Agent> builtin();
  static const char *builtin_json();

  const std::string &name() const;
  /* Phrases for the agent language model (examples and keywords). */
  std::vector<std::string> language_sentences() const;
  double agent_lm_weight() const;

  struct Data;
  const Data &data() const { return *data_; }

private:
  Agent();
  std::unique_ptr<Data> data_;
};

/* One conversation's state: dialogue state, captured entities, tool outputs,
 * pending call ids. Not thread-safe. */
class PA_LOCAL_API Dialog {
public:
  /* TRUE if the function @name may be called (declared by the session). */
  using ToolFilter = std::function<bool(const std::string &name)>;

  explicit Dialog(std::shared_ptr<const Agent> agent);
  ~Dialog();

  Plan greeting();
  Plan reprompt();
  /* The caller said (or typed) @text. */
  Plan user_said(const std::string &text, const ToolFilter &tool_ok);
  /* Outputs of earlier calls, (call_id, output text) in order. */
  Plan tool_outputs(const std::vector<std::pair<std::string, std::string>> &outputs);
  /* Fills a template against the current variables ({day}, {transcript},
   * {toolName.path}, {result.path}, {name|default}). */
  std::string render(const std::string &tmpl) const;

  const std::string &state() const { return state_; }
  bool has_pending_call(const std::string &call_id) const { return pending_.count(call_id) > 0; }

private:
  struct Pending {
    size_t intent;
    std::string tool;
  };
  Plan run_intent(size_t index, const ToolFilter &tool_ok);
  std::string pick(const std::vector<std::string> &variants, size_t &counter) const;
  JsonNode *lookup(const std::string &path) const;
  void capture_entities(const std::vector<std::string> &words);

  std::shared_ptr<const Agent> agent_;
  std::string state_;
  std::map<std::string, std::string> vars_;      /* entities, transcript */
  std::map<std::string, JsonNode *> outputs_;    /* tool name / "result" -> parsed output */
  std::map<std::string, Pending> pending_;       /* call_id -> what to say after it */
  std::map<std::string, size_t> counters_;       /* variant rotation per intent */
  size_t fallback_counter_ = 0;
};

/* A random id: @prefix + 20 alphanumerics (item_, resp_, call_, event_...). */
PA_LOCAL_API std::string make_id(const char *prefix);

} // namespace pa::local
