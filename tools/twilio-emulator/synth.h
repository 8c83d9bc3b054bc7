/* twilio-emulator: synthetic caller audio, for tests and benchmarks that
 * must not depend on recorded files. */
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace emu {

/* @ms of μ-law 8 kHz mono: 500 ms of silence, then "utterances" of 1.2 s
 * (a 140 Hz harmonic buzz with a 4 Hz syllable envelope, about -20 dBFS)
 * separated by 1.3 s of silence. Deterministic. */
std::vector<uint8_t> synth_caller_mulaw(int64_t ms);

/* Line echo: @n μ-law bytes of the caller's audio with @heard (what the
 * caller's side played) added at @gain (linear), into @out, clipped. */
void mix_echo_mulaw(const uint8_t *caller, const uint8_t *heard, double gain, uint8_t *out, size_t n);

/* Which played frame echoes into the caller's media frame of @timestamp_ms:
 * the one that played @delay_ms before it (frame timestamp/20 - delay/20),
 * if it is among the last @slots of the @played frames played so far;
 * -1 otherwise (not played yet, or before the stream). */
int64_t echo_source_frame(int64_t timestamp_ms, int64_t delay_ms, int64_t played, int64_t slots);

} // namespace emu
