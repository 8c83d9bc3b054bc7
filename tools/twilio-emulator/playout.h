/* twilio-emulator: Twilio's outbound playout buffer.
 *
 * What the server sends (media, mark, clear) is played to the caller in real
 * time: every 20 ms tick takes one frame of μ-law bytes, filling with silence
 * (0xFF) when the buffer runs dry. Marks sit at their byte position and are
 * reached once every byte queued before them has been played (the tick after
 * the one that took the last of those bytes); a mark that arrives while
 * nothing is buffered or pending is echoed at once. `clear` drops the buffer
 * and releases every pending mark at once, in order.
 *
 * Underruns: a gap is a run of missing bytes between two ticks that played
 * server audio. A gap that ends (audio resumes) within `max_gap_bytes`
 * (1 s by default) is an underrun; a longer silence is a pause between
 * responses, not an underrun. Nothing counts before the first audio, after a
 * clear (the silence is intended) or for a gap still open when the stream
 * ends.
 *
 * Playback runs: a run starts with the first server audio played after the
 * stream start, after a clear, or after a silence that was not an underrun
 * (the buffer empty for `max_gap_bytes`); run_played_bytes() is what the
 * current (or last) run has played so far. last_tick_bytes() is how much
 * server audio the latest tick played (the rest of its frame was silence).
 *
 * A pure class: no clock, no I/O; the caller drives tick().
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace emu {

class PlayoutBuffer {
public:
  explicit PlayoutBuffer(size_t frame_bytes = 160, size_t max_gap_bytes = 8000);

  /* Appends server audio. */
  void push_audio(const uint8_t *data, size_t n);

  /* Queues a mark. Returns true when it must be echoed immediately (nothing
   * buffered, no mark pending); the caller echoes it then. */
  bool push_mark(const std::string &name);

  /* `clear`: drops buffered audio; appends every pending mark to @released. */
  void clear(std::vector<std::string> &released);

  /* One tick: first appends to @released the marks whose audio has finished
   * playing, then writes frame_bytes() bytes into @out (audio, then 0xFF). */
  void tick(uint8_t *out, std::vector<std::string> &released);

  /* End of stream: an open gap is not an underrun. */
  void finish();

  size_t frame_bytes() const { return frame_bytes_; }
  size_t buffered() const { return data_.size() - head_; }
  size_t pending_marks() const { return marks_.size(); }

  /* Statistics */
  uint64_t underruns() const { return underruns_; }
  uint64_t underrun_bytes() const { return underrun_bytes_; }
  /* The gap the last tick() ended by playing audio again, counted as an
   * underrun (bytes); 0 when it ended none. The gap took the ticks before. */
  size_t ended_gap_bytes() const { return ended_gap_bytes_; }
  uint64_t played_bytes() const { return played_total_; } /* server bytes played */
  uint64_t run_played_bytes() const { return run_played_; }
  size_t last_tick_bytes() const { return last_tick_bytes_; }
  uint64_t cleared_bytes() const { return cleared_bytes_; }
  size_t max_buffered() const { return max_buffered_; }

private:
  struct Mark {
    uint64_t pos;
    std::string name;
  };
  void compact();

  size_t frame_bytes_;
  size_t max_gap_bytes_;
  std::vector<uint8_t> data_;
  size_t head_ = 0;
  uint64_t write_total_ = 0; /* bytes ever queued (cleared ones included) */
  uint64_t read_total_ = 0;  /* position up to which audio was taken (or cleared) */
  uint64_t played_total_ = 0;
  uint64_t run_played_ = 0;  /* played in the current playback run */
  size_t last_tick_bytes_ = 0;
  std::deque<Mark> marks_;

  bool playing_ = false;     /* audio played and no long pause/clear since */
  uint64_t gap_bytes_ = 0;   /* current run of missing bytes while playing */
  uint64_t underruns_ = 0;
  uint64_t underrun_bytes_ = 0;
  size_t ended_gap_bytes_ = 0;
  uint64_t cleared_bytes_ = 0;
  size_t max_buffered_ = 0;
};

} // namespace emu
