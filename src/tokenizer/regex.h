// A compiled PCRE2 pattern in UTF + UCP mode (\p{L}, \p{N}, \s, \w follow Unicode), JIT-compiled
// when the platform allows. Thread-safe: matching allocates its own match data.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ignis::tok {

class Regex {
 public:
  // Throws ignis::Error naming `what` when the pattern does not compile.
  // literal: match the pattern text as a plain string.
  Regex(const std::string& pattern, bool literal, const std::string& what);
  const std::string& pattern() const { return pattern_; }
  // The non-empty, non-overlapping matches [start, end) in a VALID UTF-8 subject, left to right.
  void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  std::string pattern_;
  std::shared_ptr<void> code_;  // pcre2_code_8
};

}  // namespace ignis::tok
