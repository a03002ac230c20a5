// Errors: every failure a user can cause (bad file, bad flag, too long a prompt)
// is an ignis::Error whose message says what was expected and what was found.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace ignis {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// Throws ignis::Error with the streamed arguments as message.
template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(detail::concat(std::forward<Args>(args)...));
}

}  // namespace ignis

// IGNIS_CHECK(cond, "what", value, "...") -- throws ignis::Error when cond is false.
#define IGNIS_CHECK(cond, ...)                   \
  do {                                           \
    if (!(cond)) ::ignis::fail(__VA_ARGS__);     \
  } while (0)
