/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The OpenAI Realtime WebSocket protocol (PROTOCOLS.md section E), in both
 * dialects: GA (nested audio config, response.output_audio.*) and the older
 * beta shapes (flat session, response.audio.*) that compatible servers still
 * speak. Client events are built as JSON text; server events are parsed into
 * one ServerEvent whose kind is the same whichever dialect named it.
 *
 * Plain C++ on json-glib: no GObject, no threads, no I/O.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rt-api.h"

namespace pa::rt {

enum class Dialect { GA, Beta };
RT_API const char *dialect_name(Dialect d);

/* Session audio formats: G.711 μ-law at 8 kHz, or PCM16 LE mono at 24 kHz
 * (the only PCM rate GA accepts). */
enum class AudioFormat { PCMU, PCM16 };
RT_API const char *audio_format_name(AudioFormat f);
/* Bytes per millisecond of audio in @f (8 for μ-law, 48 for PCM16 24 kHz). */
RT_API unsigned bytes_per_ms(AudioFormat f);

enum class TurnDetection { ServerVad, SemanticVad, None };

/* Everything session.update carries. Fields left at their "unset" value are
 * not sent, so the server keeps its default. */
struct SessionConfig {
  std::string model;                   /* GA: repeated in the session (optional); never sent in beta */
  std::string instructions;
  std::string voice;                   /* empty: server default */
  double speed = 1.0;                  /* sent when != 1.0 */
  AudioFormat input_format = AudioFormat::PCMU;
  AudioFormat output_format = AudioFormat::PCMU;
  TurnDetection turn_detection = TurnDetection::ServerVad;
  double threshold = 0.5;              /* server_vad */
  int prefix_padding_ms = 300;         /* server_vad */
  int silence_duration_ms = 500;       /* server_vad */
  int idle_timeout_ms = 0;             /* server_vad, GA only; 0: not sent */
  std::string eagerness = "auto";      /* semantic_vad: low|medium|high|auto */
  bool create_response = true;
  bool interrupt_response = true;
  std::string transcription_model;     /* empty: no input transcription */
  std::string transcription_language;  /* ISO-639-1, optional */
  std::string noise_reduction;         /* "", near_field, far_field */
  std::string tools_json;              /* a JSON array of flat tool objects, or empty */
  std::string tool_choice = "auto";    /* sent with tools */
  double temperature = -1;             /* beta only; < 0: not sent */
  int max_output_tokens = 0;           /* 0: not sent (server default "inf") */
};

/* ---- client events ---- */
RT_API std::string build_session_update(const SessionConfig &cfg, Dialect d, const std::string &event_id = "");
/* A session.update that changes only the audio formats (the caps changed
 * after the session was configured). */
RT_API std::string build_format_update(Dialect d, AudioFormat input, AudioFormat output,
                                       const std::string &event_id = "");
/* A session.update that changes only the instructions (mid-call). */
RT_API std::string build_instructions_update(Dialect d, const std::string &instructions,
                                             const std::string &event_id = "");
/* @data in the session's input format; base64-encoded into the event. */
RT_API std::string build_input_audio_append(const uint8_t *data, size_t len);
RT_API std::string build_input_audio_commit(const std::string &event_id = "");
RT_API std::string build_input_audio_clear(const std::string &event_id = "");
/* response.create; @instructions empty: a plain {"type":"response.create"}.
 * @purpose (optional) goes to response.metadata.purpose (GA and beta). */
RT_API std::string build_response_create(Dialect d, const std::string &instructions = "",
                                         const std::string &event_id = "", const std::string &purpose = "");
/* response.cancel; @response_id optional. */
RT_API std::string build_response_cancel(const std::string &response_id = "", const std::string &event_id = "");
RT_API std::string build_truncate(const std::string &item_id, int content_index, int64_t audio_end_ms,
                                  const std::string &event_id = "");
/* conversation.item.create of a function_call_output; @output is sent as
 * the string value of "output" (normally JSON text). */
RT_API std::string build_function_call_output(const std::string &call_id, const std::string &output,
                                              const std::string &event_id = "");
/* conversation.item.create of a text message. @role user|system use
 * input_text; assistant uses output_text (GA) or text (beta). */
RT_API std::string build_text_item(Dialect d, const std::string &role, const std::string &text,
                                   const std::string &event_id = "");

/* ---- tools ---- */
/* Reads tool definitions: a JSON array, or an object with a "tools" array.
 * Each tool is flat {type,name,description,parameters}; Chat Completions'
 * nested {"type":"function","function":{...}} is flattened. Returns the
 * normalised array in @out_json and the function names in @names. */
RT_API bool normalize_tools(const std::string &json_text, std::string &out_json, std::vector<std::string> &names,
                            std::string &error);
/* Appends tool objects (JSON text each) to a normalised array. */
RT_API std::string append_tools(const std::string &tools_json, const std::vector<std::string> &extra);
RT_API std::string builtin_end_call_tool();
RT_API std::string builtin_transfer_tool();

/* ---- server events ---- */
enum class EventKind {
  Unknown,
  Error,
  SessionCreated,
  SessionUpdated,
  ConversationCreated,
  SpeechStarted,
  SpeechStopped,
  InputCommitted,
  InputCleared,
  InputTimeout,
  InputTranscriptionDelta,
  InputTranscriptionCompleted,
  InputTranscriptionFailed,
  InputTranscriptionSegment,
  ItemAdded,      /* conversation.item.added (GA) / conversation.item.created (beta, GA union) */
  ItemDone,       /* conversation.item.done (GA) */
  ItemTruncated,
  ItemDeleted,
  ItemRetrieved,
  ResponseCreated,
  ResponseDone,
  OutputItemAdded,
  OutputItemDone,
  ContentPartAdded,
  ContentPartDone,
  AudioDelta,
  AudioDone,
  AudioTranscriptDelta,
  AudioTranscriptDone,
  TextDelta,
  TextDone,
  FunctionCallArgumentsDelta,
  FunctionCallArgumentsDone,
  RateLimitsUpdated,
  OutputAudioBufferEvent, /* output_audio_buffer.* (WebRTC/SIP only) */
  Ignored,                /* known, nothing to do (mcp_*, dtmf_event_received, ...) */
};

/* Which dialect an event's name belongs to (E.5); most names are common. */
enum class NameFamily { Common, GAOnly, BetaOnly };

struct Usage {
  bool present = false;
  int64_t total_tokens = 0, input_tokens = 0, output_tokens = 0;
  int64_t input_text_tokens = 0, input_audio_tokens = 0, input_cached_tokens = 0;
  int64_t output_text_tokens = 0, output_audio_tokens = 0;
};

struct ErrorInfo {
  std::string type, code, message, param, event_id;
};

struct ItemInfo {
  std::string id, type, role, status, name, call_id, arguments;
  bool has_audio = false;   /* a content part of type audio/output_audio */
  std::string transcript;   /* first audio content part's transcript */
};

struct ResponseInfo {
  std::string id, status, reason; /* reason: status_details.reason (or error code) */
  Usage usage;
  std::vector<ItemInfo> output;
};

struct SessionInfo {
  std::string id, model;
  /* The dialect the session object is shaped in: GA has type:"realtime" or
   * a nested "audio" object; beta has flat input_audio_format/modalities. */
  bool shape_known = false;
  Dialect shape = Dialect::GA;
};

struct ServerEvent {
  EventKind kind = EventKind::Unknown;
  NameFamily family = NameFamily::Common;
  std::string type; /* as received */
  std::string event_id, response_id, item_id;
  int output_index = -1, content_index = 0;
  std::string delta;      /* transcript/text/arguments delta */
  std::string text;       /* final transcript / text / arguments */
  std::string call_id, name;
  std::vector<uint8_t> audio; /* AudioDelta: decoded bytes */
  int64_t audio_start_ms = -1, audio_end_ms = -1;
  ErrorInfo error;
  ResponseInfo response;
  SessionInfo session;
  ItemInfo item;
};

enum class ParseStatus { Ok, NotJson, NotObject, NoType, BadAudio };

/* Looks up an event name: its kind and family. Unknown names give
 * EventKind::Unknown. */
RT_API EventKind event_kind(const std::string &type, NameFamily *family = nullptr);
RT_API ParseStatus parse_server_event(const char *text, size_t len, ServerEvent &out, std::string &error);
/* The same with json-glib only. parse_server_event() reads flat events
 * (deltas, speech started/stopped, done events: most of them by count)
 * with a strict scanner of its own and falls back to this for the rest;
 * tests check that both agree. */
RT_API ParseStatus parse_server_event_reference(const char *text, size_t len, ServerEvent &out, std::string &error);

/* Errors a client must handle specially (E.6). */
inline constexpr const char *kErrInvalidApiKey = "invalid_api_key";
inline constexpr const char *kErrSessionExpired = "session_expired";
inline constexpr const char *kErrBetaShapeDisabled = "beta_api_shape_disabled";
inline constexpr const char *kErrActiveResponse = "conversation_already_has_active_response";
inline constexpr const char *kErrCancelNotActive = "response_cancel_not_active";

} // namespace pa::rt
