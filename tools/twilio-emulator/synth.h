/* twilio-emulator: synthetic caller audio, for tests and benchmarks that
 * must not depend on recorded files. */
#pragma once

#include <cstdint>
#include <vector>

namespace emu {

/* @ms of μ-law 8 kHz mono: 500 ms of silence, then "utterances" of 1.2 s
 * (a 140 Hz harmonic buzz with a 4 Hz syllable envelope, about -20 dBFS)
 * separated by 1.3 s of silence. Deterministic. */
std::vector<uint8_t> synth_caller_mulaw(int64_t ms);

} // namespace emu
