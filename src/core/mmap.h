// Read-only memory map of a whole file. Model weights are used in place from the map,
// so opening a 7B model costs no copy; pages are read when a kernel first touches them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace ignis {

class MappedFile {
 public:
  // Throws ignis::Error naming the path when the file cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Reads a whole (small) file into a string; throws with the path on failure.
std::string read_text_file(const std::string& path);

}  // namespace ignis
