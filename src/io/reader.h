// A bounds-checked little-endian cursor over untrusted bytes. Every read checks that
// the bytes exist; every count is checked against what is left before anything is
// allocated, so a hostile file cannot make us allocate or read out of bounds.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "core/error.h"

namespace ignis {

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string what) : data_(data), size_(size), what_(std::move(what)) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  const std::string& what() const { return what_; }

  void need(size_t n, std::string_view item) const {
    if (n > remaining())
      fail(what_, ": truncated at offset ", pos_, " reading ", item, " (need ", n, " bytes, ", remaining(),
           " left)");
  }
  template <typename T>
  T read(std::string_view item) {
    need(sizeof(T), item);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  const uint8_t* bytes(size_t n, std::string_view item) {
    need(n, item);
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  void skip(size_t n, std::string_view item) { bytes(n, item); }
  void seek(size_t off) {
    if (off > size_) fail(what_, ": offset ", off, " is past the end (", size_, " bytes)");
    pos_ = off;
  }
  // Checks that `count` items of at least `min_item_bytes` each can still fit.
  void check_count(uint64_t count, size_t min_item_bytes, std::string_view item) const {
    if (min_item_bytes && count > remaining() / min_item_bytes)
      fail(what_, ": ", item, " count ", count, " at offset ", pos_, " cannot fit in the ", remaining(),
           " bytes left");
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string what_;
};

// True if s is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view s);

// Parses untrusted JSON text. Every failure is an ignis::Error naming `what` (nlohmann's own
// exceptions never escape): syntax errors, nesting deeper than `max_depth`, and a key that
// appears twice in one object (nlohmann would silently keep the last one).
nlohmann::json parse_json(std::string_view text, const std::string& what, int max_depth = 64);

}  // namespace ignis
