/* twilio-emulator: playout buffer with marks */
#include "playout.h"

#include <algorithm>
#include <cstring>

namespace emu {

PlayoutBuffer::PlayoutBuffer(size_t frame_bytes, size_t max_gap_bytes)
    : frame_bytes_(frame_bytes), max_gap_bytes_(max_gap_bytes) {}

void PlayoutBuffer::compact() {
  /* Drop played bytes once they dominate, so the vector does not grow for
   * the whole call; amortised O(1) per byte. */
  if (head_ > 4096 && head_ * 2 > data_.size()) {
    data_.erase(data_.begin(), data_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

void PlayoutBuffer::push_audio(const uint8_t *data, size_t n) {
  if (!n)
    return;
  compact();
  data_.insert(data_.end(), data, data + n);
  write_total_ += n;
  max_buffered_ = std::max(max_buffered_, buffered());
}

bool PlayoutBuffer::push_mark(const std::string &name) {
  if (buffered() == 0 && marks_.empty())
    return true;
  marks_.push_back({write_total_, name});
  return false;
}

void PlayoutBuffer::clear(std::vector<std::string> &released) {
  cleared_bytes_ += buffered();
  read_total_ += buffered();
  data_.clear();
  head_ = 0;
  for (auto &m : marks_)
    released.push_back(std::move(m.name));
  marks_.clear();
  /* The silence after a clear is intended: not an underrun. */
  playing_ = false;
  gap_bytes_ = 0;
}

void PlayoutBuffer::tick(uint8_t *out, std::vector<std::string> &released) {
  /* Bytes taken at earlier ticks have finished playing by now. */
  while (!marks_.empty() && marks_.front().pos <= read_total_) {
    released.push_back(std::move(marks_.front().name));
    marks_.pop_front();
  }

  size_t n = std::min(frame_bytes_, buffered());
  last_tick_bytes_ = n;
  ended_gap_bytes_ = 0;
  if (n) {
    if (!playing_)
      run_played_ = 0; /* a new playback run */
    run_played_ += n;
    memcpy(out, data_.data() + head_, n);
    head_ += n;
    read_total_ += n;
    played_total_ += n;
    if (head_ == data_.size()) {
      data_.clear(); /* keeps its capacity: no allocation per frame */
      head_ = 0;
    }
    if (playing_ && gap_bytes_ > 0) {
      /* audio resumed: the gap before it was an underrun */
      underruns_++;
      underrun_bytes_ += gap_bytes_;
      ended_gap_bytes_ = gap_bytes_;
    }
    playing_ = true;
    gap_bytes_ = 0;
  }
  if (n < frame_bytes_) {
    memset(out + n, 0xFF, frame_bytes_ - n);
    if (playing_) {
      gap_bytes_ += frame_bytes_ - n;
      if (gap_bytes_ >= max_gap_bytes_) {
        /* a long silence: the response ended, this was no underrun */
        playing_ = false;
        gap_bytes_ = 0;
      }
    }
  }
}

void PlayoutBuffer::finish() {
  playing_ = false;
  gap_bytes_ = 0;
}

} // namespace emu
