#pragma once

// Progress display for long local steps (`kiln up` building the base template). On a
// terminal: one line redrawn in place, "[#####-----]  42%  download  Retrieving libc6 ...",
// cut to the terminal width. Otherwise (logs, pipes): a plain line whenever the phase changes
// or the percentage passes another multiple of 10.

#include <string>
#include <string_view>

namespace kiln::cli {

// One progress line without cursor control, at most `width` columns (at least the bar).
std::string RenderProgressLine(std::string_view title, std::string_view phase,
                               std::string_view detail, int percent, int width);

// Not thread-safe; call from the thread doing the work.
class ProgressDisplay {
 public:
  // `width` is the terminal width (ignored when !tty; 0 means 80).
  ProgressDisplay(int fd, bool tty, int width, std::string title);
  ~ProgressDisplay();
  ProgressDisplay(const ProgressDisplay&) = delete;
  ProgressDisplay& operator=(const ProgressDisplay&) = delete;

  // `percent` is clamped to 0..100 and never goes back.
  void Update(std::string_view phase, std::string_view detail, int percent);
  // Ends the display: on a terminal the line is finished with a newline; `message` (when
  // non-empty) is printed on its own line.
  void Finish(std::string_view message);

 private:
  void Write(std::string_view s);

  int fd_;
  bool tty_;
  int width_;
  std::string title_;
  std::string last_line_;
  std::string last_phase_;
  int last_percent_ = 0;
  int last_bucket_ = -1;
  bool drawn_ = false;
  bool finished_ = false;
};

// The width of the terminal on `fd`, 0 when unknown.
int TerminalWidth(int fd);

}  // namespace kiln::cli
