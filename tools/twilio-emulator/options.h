/* twilio-emulator: settings of one run (from the command line) */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "specs.h"
#include "turns.h"
#include "twilio-protocol.h"

namespace emu {

struct Options {
  /* webhook */
  std::string url;                 /* --url: the voice webhook */
  std::string auth_token;          /* --auth-token or $TWILIO_AUTH_TOKEN; never printed */
  std::string account_sid;         /* --account-sid, random when empty */
  std::string from = "+14155551212";
  std::string to = "+15005550006";
  pa::twilio::Params extra_params; /* --param NAME=VALUE */
  int webhook_timeout_s = 15;      /* Twilio's default webhook timeout */

  /* stream */
  bool plain_ws = false;           /* --plain-ws: ws:// even for non-loopback hosts */
  bool raw_transport = false;      /* --transport raw (default libsoup) */
  std::string connect_host;        /* --connect-to HOST:PORT (empty: the TwiML's host) */
  int connect_port = 0;

  /* caller side */
  std::string audio;               /* --audio FILE.wav or synth:MS */
  std::string replay;              /* --replay FILE (a --capture file) */
  int replay_call = 0;             /* --replay-call N (0: the first call in the file) */
  int64_t tail_ms = 2000;
  std::vector<DtmfSpec> dtmf;
  std::vector<Range> silence_gaps;
  int64_t hangup_ms = -1;
  std::vector<InjectSpec> injects;
  EchoSpec echo;                   /* --echo DB[:DELAY_MS]: what was played, back into the caller's audio */

  /* load */
  int calls = 1;
  int64_t ramp_ms = 0;
  int phases = 1;                  /* --phases: call i's frames at (i mod N) x 20/N ms (phases.h) */
  bool sequential = false;
  int max_duration_s = 120;
  int64_t poll_batch_us = -1;      /* --poll-batch-us; -1: automatic */

  /* analysis */
  TurnParams turn;

  /* output */
  std::string out_dir;
  std::string report;
  std::string capture;
  bool quiet = false;
};

} // namespace emu
