/* gst-phone-agent: the local model's scripted agent */
#include "local-agent.h"

#include <json-glib/json-glib.h>

#include <algorithm>
#include <cmath>

#include "local-stt.h"

namespace pa::local {

struct Agent::Data {
  struct Entity {
    std::string name;
    std::vector<std::pair<std::vector<std::string>, std::string>> values; /* phrase words -> value */
    std::string fallback;
  };
  struct Intent {
    std::string name;
    std::vector<std::vector<std::string>> keywords; /* phrases as words */
    std::vector<std::string> examples;
    std::vector<std::string> when;
    std::vector<std::string> say;
    std::string call_name;
    JsonNode *call_arguments = nullptr; /* object template */
    std::vector<std::string> after;
    std::string on_error;
    std::string unavailable;
    bool sets_state = false;
    std::string state;
    double min_score = 1.0;
  };
  std::string name;
  std::vector<std::string> greeting;
  std::vector<std::string> fallback;
  std::string reprompt;
  std::string tool_unavailable;
  std::string tool_error;
  bool call_undeclared_tools = false;
  double agent_lm_weight = 0.3;
  std::vector<std::string> extra_phrases;
  std::vector<Entity> entities;
  std::vector<Intent> intents;

  ~Data() {
    for (auto &i : intents)
      if (i.call_arguments)
        json_node_unref(i.call_arguments);
  }
};

namespace {

/* A string or an array of strings. */
bool read_strings(JsonObject *o, const char *member, std::vector<std::string> &out, std::string &error,
                  const std::string &where) {
  if (!json_object_has_member(o, member))
    return true;
  JsonNode *n = json_object_get_member(o, member);
  if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING) {
    out.push_back(json_node_get_string(n));
    return true;
  }
  if (JSON_NODE_HOLDS_ARRAY(n)) {
    JsonArray *a = json_node_get_array(n);
    for (guint i = 0; i < json_array_get_length(a); i++) {
      JsonNode *e = json_array_get_element(a, i);
      if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING) {
        error = where + "." + member + " must hold strings";
        return false;
      }
      out.push_back(json_node_get_string(e));
    }
    return true;
  }
  error = where + "." + member + " must be a string or an array of strings";
  return false;
}

bool read_string(JsonObject *o, const char *member, std::string &out, std::string &error, const std::string &where) {
  if (!json_object_has_member(o, member))
    return true;
  JsonNode *n = json_object_get_member(o, member);
  if (JSON_NODE_HOLDS_NULL(n))
    return true;
  if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
    error = where + "." + member + " must be a string";
    return false;
  }
  out = json_node_get_string(n);
  return true;
}

bool read_number(JsonObject *o, const char *member, double &out, std::string &error, const std::string &where) {
  if (!json_object_has_member(o, member))
    return true;
  JsonNode *n = json_object_get_member(o, member);
  GType t = JSON_NODE_HOLDS_VALUE(n) ? json_node_get_value_type(n) : G_TYPE_INVALID;
  if (t != G_TYPE_INT64 && t != G_TYPE_DOUBLE) {
    error = where + "." + member + " must be a number";
    return false;
  }
  out = json_node_get_double(n);
  return true;
}

bool contains_phrase(const std::vector<std::string> &words, const std::vector<std::string> &phrase) {
  if (phrase.empty() || phrase.size() > words.size())
    return false;
  for (size_t i = 0; i + phrase.size() <= words.size(); i++)
    if (std::equal(phrase.begin(), phrase.end(), words.begin() + static_cast<long>(i)))
      return true;
  return false;
}

std::string node_to_text(JsonNode *n) {
  if (!n || JSON_NODE_HOLDS_NULL(n))
    return "";
  if (JSON_NODE_HOLDS_VALUE(n)) {
    GType t = json_node_get_value_type(n);
    if (t == G_TYPE_STRING)
      return json_node_get_string(n);
    if (t == G_TYPE_BOOLEAN)
      return json_node_get_boolean(n) ? "yes" : "no";
    if (t == G_TYPE_INT64)
      return std::to_string(json_node_get_int(n));
    double d = json_node_get_double(n);
    if (std::floor(d) == d && std::fabs(d) < 1e15)
      return std::to_string(static_cast<long long>(d));
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    return g_ascii_formatd(buf, sizeof buf, "%g", d);
  }
  if (JSON_NODE_HOLDS_ARRAY(n)) {
    JsonArray *a = json_node_get_array(n);
    std::string s;
    guint len = json_array_get_length(a);
    for (guint i = 0; i < len; i++) {
      if (i)
        s += (i + 1 == len) ? " or " : ", ";
      s += node_to_text(json_array_get_element(a, i));
    }
    return s;
  }
  gchar *t = json_to_string(n, FALSE);
  std::string s(t);
  g_free(t);
  return s;
}

JsonNode *parse_json(const std::string &text) {
  JsonParser *p = json_parser_new();
  JsonNode *root = nullptr;
  if (json_parser_load_from_data(p, text.data(), static_cast<gssize>(text.size()), nullptr) &&
      json_parser_get_root(p))
    root = json_node_copy(json_parser_get_root(p));
  g_object_unref(p);
  return root;
}

} // namespace

std::string make_id(const char *prefix) {
  static const char kAlnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string s(prefix);
  for (int i = 0; i < 20; i++)
    s.push_back(kAlnum[g_random_int_range(0, 62)]);
  return s;
}

/* ---------------------------------------------------------------- Agent */

Agent::Agent() : data_(new Data) {}
Agent::~Agent() = default;

const std::string &Agent::name() const { return data_->name; }
double Agent::agent_lm_weight() const { return data_->agent_lm_weight; }

std::vector<std::string> Agent::language_sentences() const {
  std::vector<std::string> s = data_->extra_phrases;
  for (const auto &i : data_->intents) {
    s.insert(s.end(), i.examples.begin(), i.examples.end());
    for (const auto &k : i.keywords) {
      std::string phrase;
      for (const auto &w : k)
        phrase += (phrase.empty() ? "" : " ") + w;
      s.push_back(phrase);
    }
  }
  for (const auto &e : data_->entities)
    for (const auto &[words, value] : e.values) {
      std::string phrase;
      for (const auto &w : words)
        phrase += (phrase.empty() ? "" : " ") + w;
      s.push_back(phrase);
    }
  return s;
}

std::shared_ptr<const Agent> Agent::load_file(const std::string &path, std::string &error) {
  gchar *contents = nullptr;
  gsize len = 0;
  GError *err = nullptr;
  if (!g_file_get_contents(path.c_str(), &contents, &len, &err)) {
    error = std::string("cannot read agent file: ") + err->message;
    g_error_free(err);
    return nullptr;
  }
  std::string json(contents, len);
  g_free(contents);
  auto a = load_json(json, error);
  if (!a)
    error = path + ": " + error;
  return a;
}

std::shared_ptr<const Agent> Agent::load_json(const std::string &json, std::string &error) {
  JsonParser *parser = json_parser_new();
  GError *err = nullptr;
  if (!json_parser_load_from_data(parser, json.data(), static_cast<gssize>(json.size()), &err)) {
    error = std::string("not valid JSON: ") + err->message;
    g_error_free(err);
    g_object_unref(parser);
    return nullptr;
  }
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
    error = "the agent must be a JSON object";
    g_object_unref(parser);
    return nullptr;
  }
  std::shared_ptr<Agent> agent(new Agent());
  Data &d = *agent->data_;
  JsonObject *o = json_node_get_object(root);
  bool ok = read_string(o, "name", d.name, error, "agent") && read_strings(o, "greeting", d.greeting, error, "agent") &&
            read_strings(o, "fallback", d.fallback, error, "agent") &&
            read_string(o, "reprompt", d.reprompt, error, "agent") &&
            read_string(o, "tool_unavailable", d.tool_unavailable, error, "agent") &&
            read_string(o, "tool_error", d.tool_error, error, "agent");
  if (ok && json_object_has_member(o, "call_undeclared_tools"))
    d.call_undeclared_tools = json_object_get_boolean_member(o, "call_undeclared_tools");
  if (ok && json_object_has_member(o, "recognizer")) {
    JsonNode *rn = json_object_get_member(o, "recognizer");
    if (!JSON_NODE_HOLDS_OBJECT(rn)) {
      error = "agent.recognizer must be an object";
      ok = false;
    } else {
      JsonObject *r = json_node_get_object(rn);
      ok = read_number(r, "agent_lm_weight", d.agent_lm_weight, error, "agent.recognizer") &&
           read_strings(r, "phrases", d.extra_phrases, error, "agent.recognizer");
      if (ok && (d.agent_lm_weight < 0 || d.agent_lm_weight > 1)) {
        error = "agent.recognizer.agent_lm_weight must be between 0 and 1";
        ok = false;
      }
    }
  }
  if (ok && json_object_has_member(o, "entities")) {
    JsonNode *en = json_object_get_member(o, "entities");
    if (!JSON_NODE_HOLDS_OBJECT(en)) {
      error = "agent.entities must be an object";
      ok = false;
    } else {
      JsonObject *eo = json_node_get_object(en);
      GList *names = json_object_get_members(eo);
      for (GList *l = names; l && ok; l = l->next) {
        const char *ename = static_cast<const char *>(l->data);
        std::string where = std::string("agent.entities.") + ename;
        JsonNode *vn = json_object_get_member(eo, ename);
        if (!JSON_NODE_HOLDS_OBJECT(vn)) {
          error = where + " must be an object";
          ok = false;
          break;
        }
        JsonObject *eobj = json_node_get_object(vn);
        Data::Entity ent;
        ent.name = ename;
        ok = read_string(eobj, "default", ent.fallback, error, where);
        if (ok && json_object_has_member(eobj, "values")) {
          JsonNode *valn = json_object_get_member(eobj, "values");
          if (JSON_NODE_HOLDS_OBJECT(valn)) {
            JsonObject *vo = json_node_get_object(valn);
            GList *phrases = json_object_get_members(vo);
            for (GList *p = phrases; p; p = p->next) {
              const char *phrase = static_cast<const char *>(p->data);
              JsonNode *pv = json_object_get_member(vo, phrase);
              std::string value = JSON_NODE_HOLDS_VALUE(pv) && json_node_get_value_type(pv) == G_TYPE_STRING
                                      ? json_node_get_string(pv)
                                      : phrase;
              ent.values.emplace_back(normalize_words(phrase), value);
            }
            g_list_free(phrases);
          } else {
            std::vector<std::string> list;
            ok = read_strings(eobj, "values", list, error, where);
            for (const auto &p : list)
              ent.values.emplace_back(normalize_words(p), p);
          }
        }
        /* longest phrases first, so "next week" wins over "week" */
        std::stable_sort(ent.values.begin(), ent.values.end(),
                         [](const auto &a, const auto &b) { return a.first.size() > b.first.size(); });
        d.entities.push_back(std::move(ent));
      }
      g_list_free(names);
    }
  }
  if (ok) {
    JsonNode *in = json_object_has_member(o, "intents") ? json_object_get_member(o, "intents") : nullptr;
    if (in && !JSON_NODE_HOLDS_ARRAY(in)) {
      error = "agent.intents must be an array";
      ok = false;
    } else if (in) {
      JsonArray *arr = json_node_get_array(in);
      for (guint i = 0; ok && i < json_array_get_length(arr); i++) {
        JsonNode *n = json_array_get_element(arr, i);
        std::string where = "agent.intents[" + std::to_string(i) + "]";
        if (!JSON_NODE_HOLDS_OBJECT(n)) {
          error = where + " must be an object";
          ok = false;
          break;
        }
        JsonObject *io = json_node_get_object(n);
        Data::Intent it;
        std::vector<std::string> keywords;
        ok = read_string(io, "name", it.name, error, where) && read_strings(io, "keywords", keywords, error, where) &&
             read_strings(io, "examples", it.examples, error, where) &&
             read_strings(io, "when", it.when, error, where) && read_strings(io, "say", it.say, error, where) &&
             read_strings(io, "after", it.after, error, where) &&
             read_string(io, "on_error", it.on_error, error, where) &&
             read_string(io, "unavailable", it.unavailable, error, where) &&
             read_number(io, "min_score", it.min_score, error, where);
        if (!ok)
          break;
        if (it.name.empty())
          it.name = "intent" + std::to_string(i);
        where = "intent '" + it.name + "'";
        for (const auto &k : keywords) {
          auto w = normalize_words(k);
          if (!w.empty())
            it.keywords.push_back(w);
        }
        if (it.keywords.empty()) {
          error = where + " has no keywords";
          ok = false;
          break;
        }
        if (json_object_has_member(io, "state")) {
          it.sets_state = true;
          ok = read_string(io, "state", it.state, error, where);
        }
        std::string action;
        if (ok)
          ok = read_string(io, "action", action, error, where);
        if (ok && !action.empty()) {
          if (action != "end_call" && action != "transfer_to_human") {
            error = where + ": action must be end_call or transfer_to_human";
            ok = false;
            break;
          }
          it.call_name = action;
          std::string reason = "{transcript}";
          read_string(io, "reason", reason, error, where);
          JsonObject *args = json_object_new();
          json_object_set_string_member(args, "reason", reason.c_str());
          it.call_arguments = json_node_init_object(json_node_alloc(), args);
          json_object_unref(args);
        }
        if (ok && json_object_has_member(io, "call")) {
          if (!it.call_name.empty()) {
            error = where + " has both call and action";
            ok = false;
            break;
          }
          JsonNode *cn = json_object_get_member(io, "call");
          JsonObject *co = JSON_NODE_HOLDS_OBJECT(cn) ? json_node_get_object(cn) : nullptr;
          if (!co || !json_object_has_member(co, "name")) {
            error = where + ".call must be an object with a name";
            ok = false;
            break;
          }
          ok = read_string(co, "name", it.call_name, error, where + ".call");
          JsonNode *an = json_object_has_member(co, "arguments") ? json_object_get_member(co, "arguments") : nullptr;
          if (ok && an && !JSON_NODE_HOLDS_OBJECT(an)) {
            error = where + ".call.arguments must be an object";
            ok = false;
            break;
          }
          if (an)
            it.call_arguments = json_node_copy(an);
          else
            it.call_arguments = json_node_init_object(json_node_alloc(), json_object_new());
        }
        if (ok && it.say.empty() && it.call_name.empty()) {
          error = where + " says nothing and calls nothing";
          ok = false;
        }
        if (ok)
          d.intents.push_back(std::move(it));
        else
          break;
      }
    }
  }
  if (ok && d.greeting.empty())
    d.greeting.push_back("Hello, how can I help you?");
  if (ok && d.fallback.empty())
    d.fallback.push_back("Sorry, I didn't catch that. Could you say it again?");
  if (d.reprompt.empty())
    d.reprompt = "Is there anything else I can help you with?";
  if (d.tool_unavailable.empty())
    d.tool_unavailable = "Sorry, I can't do that on this line.";
  if (d.tool_error.empty())
    d.tool_error = "Sorry, something went wrong on my side.";
  g_object_unref(parser);
  if (!ok)
    return nullptr;
  return agent;
}

std::shared_ptr<const Agent> Agent::builtin() {
  std::string error;
  auto a = load_json(builtin_json(), error);
  if (!a)
    g_error("built-in agent does not load: %s", error.c_str()); /* a build bug, caught by the tests */
  return a;
}

/* --------------------------------------------------------------- Dialog */

Dialog::Dialog(std::shared_ptr<const Agent> agent) : agent_(std::move(agent)) {}

Dialog::~Dialog() {
  for (auto &[k, n] : outputs_)
    json_node_unref(n);
}

std::string Dialog::pick(const std::vector<std::string> &variants, size_t &counter) const {
  if (variants.empty())
    return "";
  return render(variants[counter++ % variants.size()]);
}

Plan Dialog::greeting() {
  Plan p;
  p.intent = "greeting";
  size_t c = counters_["#greeting"];
  p.say = pick(agent_->data().greeting, c);
  counters_["#greeting"] = c;
  state_.clear();
  return p;
}

Plan Dialog::reprompt() {
  Plan p;
  p.intent = "reprompt";
  p.say = render(agent_->data().reprompt);
  return p;
}

void Dialog::capture_entities(const std::vector<std::string> &words) {
  for (const auto &e : agent_->data().entities)
    for (const auto &[phrase, value] : e.values)
      if (contains_phrase(words, phrase)) {
        vars_[e.name] = value;
        break;
      }
}

Plan Dialog::user_said(const std::string &text, const ToolFilter &tool_ok) {
  const auto &d = agent_->data();
  std::vector<std::string> words = normalize_words(text);
  vars_["transcript"] = text;
  capture_entities(words);

  double best = 0;
  size_t best_i = d.intents.size();
  for (size_t i = 0; i < d.intents.size(); i++) {
    const auto &it = d.intents[i];
    double score = 0;
    if (!it.when.empty()) {
      if (std::find(it.when.begin(), it.when.end(), state_) == it.when.end())
        continue;
      score += 0.5; /* expected in this state */
    }
    double matched = 0;
    for (const auto &k : it.keywords)
      if (contains_phrase(words, k))
        matched += static_cast<double>(k.size());
    if (matched < it.min_score)
      continue;
    score += matched;
    if (score > best) {
      best = score;
      best_i = i;
    }
  }
  if (best_i == d.intents.size()) {
    Plan p;
    p.intent = "fallback";
    p.say = pick(d.fallback, fallback_counter_);
    return p;
  }
  return run_intent(best_i, tool_ok);
}

namespace {
/* Renders every string of @tmpl; a string that is exactly "{path}" takes
 * the referenced JSON value as is (numbers stay numbers). */
JsonNode *render_node(JsonNode *tmpl, const Dialog &dlg, const std::function<JsonNode *(const std::string &)> &raw) {
  if (JSON_NODE_HOLDS_OBJECT(tmpl)) {
    JsonObject *src = json_node_get_object(tmpl);
    JsonObject *dst = json_object_new();
    GList *members = json_object_get_members(src);
    for (GList *l = members; l; l = l->next) {
      const char *k = static_cast<const char *>(l->data);
      json_object_set_member(dst, k, render_node(json_object_get_member(src, k), dlg, raw));
    }
    g_list_free(members);
    JsonNode *n = json_node_init_object(json_node_alloc(), dst);
    json_object_unref(dst);
    return n;
  }
  if (JSON_NODE_HOLDS_ARRAY(tmpl)) {
    JsonArray *src = json_node_get_array(tmpl);
    JsonArray *dst = json_array_new();
    for (guint i = 0; i < json_array_get_length(src); i++)
      json_array_add_element(dst, render_node(json_array_get_element(src, i), dlg, raw));
    JsonNode *n = json_node_init_array(json_node_alloc(), dst);
    json_array_unref(dst);
    return n;
  }
  if (JSON_NODE_HOLDS_VALUE(tmpl) && json_node_get_value_type(tmpl) == G_TYPE_STRING) {
    std::string s = json_node_get_string(tmpl);
    if (s.size() > 2 && s.front() == '{' && s.back() == '}' && s.find('{', 1) == std::string::npos &&
        s.find('|') == std::string::npos) {
      JsonNode *v = raw(s.substr(1, s.size() - 2));
      if (v && !JSON_NODE_HOLDS_VALUE(v))
        return json_node_copy(v);
      if (v && json_node_get_value_type(v) != G_TYPE_STRING)
        return json_node_copy(v);
    }
    return json_node_init_string(json_node_alloc(), dlg.render(s).c_str());
  }
  return json_node_copy(tmpl);
}
} // namespace

Plan Dialog::run_intent(size_t index, const ToolFilter &tool_ok) {
  const auto &it = agent_->data().intents[index];
  Plan p;
  p.intent = it.name;
  size_t &counter = counters_[it.name];
  if (!it.call_name.empty()) {
    bool allowed = agent_->data().call_undeclared_tools ? true : (tool_ok && tool_ok(it.call_name));
    if (!allowed) {
      p.say = render(it.unavailable.empty() ? agent_->data().tool_unavailable : it.unavailable);
      return p;
    }
    p.say = pick(it.say, counter);
    ToolCallPlan c;
    c.call_id = make_id("call_");
    c.name = it.call_name;
    JsonNode *args = render_node(it.call_arguments, *this, [this](const std::string &path) { return lookup(path); });
    gchar *t = json_to_string(args, FALSE);
    c.arguments = t;
    g_free(t);
    json_node_unref(args);
    pending_[c.call_id] = {index, it.call_name};
    p.calls.push_back(std::move(c));
    state_.clear(); /* the intent's state applies once the output is in */
    return p;
  }
  p.say = pick(it.say, counter);
  if (it.sets_state)
    state_ = it.state;
  else
    state_.clear();
  return p;
}

Plan Dialog::tool_outputs(const std::vector<std::pair<std::string, std::string>> &outputs) {
  Plan p;
  const auto &d = agent_->data();
  for (const auto &[call_id, text] : outputs) {
    auto pit = pending_.find(call_id);
    if (pit == pending_.end())
      continue;
    Pending pend = pit->second;
    pending_.erase(pit);
    const auto &it = d.intents[pend.intent];
    JsonNode *out = parse_json(text);
    if (!out)
      out = json_node_init_string(json_node_alloc(), text.c_str());
    for (const std::string &key : {pend.tool, std::string("result")}) {
      auto o = outputs_.find(key);
      if (o != outputs_.end())
        json_node_unref(o->second);
      outputs_[key] = json_node_copy(out);
    }
    bool failed = false;
    if (JSON_NODE_HOLDS_OBJECT(out)) {
      JsonObject *oo = json_node_get_object(out);
      if (json_object_has_member(oo, "error")) {
        JsonNode *e = json_object_get_member(oo, "error");
        failed = !(JSON_NODE_HOLDS_NULL(e) ||
                   (JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_BOOLEAN &&
                    !json_node_get_boolean(e)));
        if (failed)
          vars_["error"] = node_to_text(e);
      }
    }
    json_node_unref(out);
    std::string say;
    if (failed) {
      say = render(it.on_error.empty() ? d.tool_error : it.on_error);
    } else {
      size_t &counter = counters_[it.name + "#after"];
      say = pick(it.after, counter);
      if (it.sets_state)
        state_ = it.state;
      else
        state_.clear();
    }
    if (!say.empty())
      p.say += (p.say.empty() ? "" : " ") + say;
    p.intent = it.name;
  }
  return p;
}

JsonNode *Dialog::lookup(const std::string &path_in) const {
  /* turn a[0].b into a.0.b */
  std::string path;
  for (char c : path_in) {
    if (c == '[')
      path.push_back('.');
    else if (c != ']')
      path.push_back(c);
  }
  gchar **parts = g_strsplit(path.c_str(), ".", -1);
  JsonNode *node = nullptr;
  if (parts[0]) {
    auto o = outputs_.find(parts[0]);
    if (o != outputs_.end()) {
      node = o->second;
      for (int i = 1; parts[i] && node; i++) {
        if (JSON_NODE_HOLDS_OBJECT(node)) {
          JsonObject *obj = json_node_get_object(node);
          node = json_object_has_member(obj, parts[i]) ? json_object_get_member(obj, parts[i]) : nullptr;
        } else if (JSON_NODE_HOLDS_ARRAY(node)) {
          JsonArray *arr = json_node_get_array(node);
          gchar *end = nullptr;
          guint64 idx = g_ascii_strtoull(parts[i], &end, 10);
          node = (end && *end == '\0' && end != parts[i] && idx < json_array_get_length(arr))
                     ? json_array_get_element(arr, static_cast<guint>(idx))
                     : nullptr;
        } else {
          node = nullptr;
        }
      }
    }
  }
  g_strfreev(parts);
  return node;
}

std::string Dialog::render(const std::string &tmpl) const {
  std::string out;
  size_t i = 0;
  while (i < tmpl.size()) {
    size_t open = tmpl.find('{', i);
    if (open == std::string::npos) {
      out += tmpl.substr(i);
      break;
    }
    size_t close = tmpl.find('}', open);
    if (close == std::string::npos) {
      out += tmpl.substr(i);
      break;
    }
    out += tmpl.substr(i, open - i);
    std::string expr = tmpl.substr(open + 1, close - open - 1);
    std::string name = expr, fallback;
    size_t bar = expr.find('|');
    if (bar != std::string::npos) {
      name = expr.substr(0, bar);
      fallback = expr.substr(bar + 1);
    }
    std::string value;
    auto v = vars_.find(name);
    if (v != vars_.end()) {
      value = v->second;
    } else if (name == "state") {
      value = state_;
    } else if (JsonNode *n = lookup(name)) {
      value = node_to_text(n);
    } else {
      for (const auto &e : agent_->data().entities)
        if (e.name == name)
          value = e.fallback;
    }
    out += value.empty() ? fallback : value;
    i = close + 1;
  }
  return out;
}

} // namespace pa::local
