/* twilio-emulator: caller turns and response latency, by frame energy.
 *
 * Both sides are cut into 20 ms frames of μ-law on one timeline whose zero is
 * the stream start (frame k covers [20k, 20k+20) ms). A frame is speech when
 * its RMS level is above `threshold_db` (dBFS).
 *
 * Caller turn: speech frames merged while the silences between them are
 * shorter than `end_silence_ms`. The turn's onset is its first speech frame,
 * its end the end of its last speech frame; it has *ended* once
 * `end_silence_ms` of silence follow (a turn cut off by the end of the audio
 * has not ended). Turns with less than `min_speech_ms` of speech frames are
 * clicks, not turns.
 *
 * Response latency of an ended turn: from its end to the first *onset* of
 * played-back audio (a heard frame above the threshold whose previous frame
 * is not) that starts at or after the end and before the next turn's onset.
 * None when there is no such onset. Resolution: one 20 ms frame.
 *
 * Pure functions, testable without a clock.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace emu {

struct TurnParams {
  double threshold_db = -40.0;
  int64_t frame_ms = 20;
  int64_t end_silence_ms = 500;
  int64_t min_speech_ms = 60;
};

/* RMS level of @n μ-law bytes in dBFS (full scale = 32768); -120 for digital
 * silence or n == 0. */
float mulaw_level_db(const uint8_t *mulaw, size_t n);

struct Turn {
  int64_t onset_ms = 0;
  int64_t end_ms = 0;
  bool ended = false;
};

std::vector<Turn> detect_turns(const std::vector<float> &level_db, const TurnParams &p);

/* One entry per turn (std::nullopt for turns that did not end or got no
 * response). @heard_db: level of each played-back frame from frame 0. */
std::vector<std::optional<int64_t>> response_latencies(const std::vector<Turn> &turns,
                                                       const std::vector<float> &heard_db,
                                                       const TurnParams &p);

/* The latest turn onset at or before @t_ms, if any. */
std::optional<int64_t> latest_onset(const std::vector<Turn> &turns, int64_t t_ms);

/* Index of the latest turn whose onset is at or before @t_ms; -1 if none. */
int latest_turn(const std::vector<Turn> &turns, int64_t t_ms);

/* Barge-in figures from what the playout played: @server_bytes holds, per
 * played frame from frame 0, how many of its bytes were server audio (the
 * rest was silence inserted because the buffer was empty). */

/* End (ms) of the last of the first @frames frames that played any server
 * audio; none when none did. */
std::optional<int64_t> last_audio_end_ms(const std::vector<uint8_t> &server_bytes, size_t frames, int64_t frame_ms);

/* Server audio (ms; μ-law 8 kHz, 8 bytes per ms) played in the frames from
 * @from_frame on that start before @until_ms. */
double audio_ms_between(const std::vector<uint8_t> &server_bytes, size_t from_frame, int64_t until_ms,
                        int64_t frame_ms);

} // namespace emu
