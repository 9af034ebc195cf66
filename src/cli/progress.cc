#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace kiln::cli {

namespace {

constexpr int kBarCells = 20;

// Cuts `s` to at most `cols` code points, never inside a UTF-8 sequence; drops control bytes.
std::string Fit(std::string_view s, int cols) {
  std::string out;
  int n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    bool lead = (c & 0xC0) != 0x80;
    if (lead && n >= cols) break;
    if (c < 0x20 || c == 0x7f) c = ' ';
    out += static_cast<char>(c);
    if (lead) ++n;
  }
  return out;
}

}  // namespace

std::string RenderProgressLine(std::string_view title, std::string_view phase,
                               std::string_view detail, int percent, int width) {
  percent = std::clamp(percent, 0, 100);
  int filled = percent * kBarCells / 100;
  std::string line = "[";
  line.append(static_cast<size_t>(filled), '#');
  line.append(static_cast<size_t>(kBarCells - filled), '-');
  line += "] ";
  std::string pct = std::to_string(percent) + "%";
  line.append(4 - std::min<size_t>(4, pct.size()), ' ');
  line += pct;
  std::string text;
  for (std::string_view part : {title, phase, detail}) {
    if (part.empty()) continue;
    text += "  ";
    text += part;
  }
  int room = std::max(0, width - static_cast<int>(line.size()));
  return line + Fit(text, room);
}

int TerminalWidth(int fd) {
  winsize ws{};
  if (ioctl(fd, TIOCGWINSZ, &ws) != 0) return 0;
  return ws.ws_col;
}

ProgressDisplay::ProgressDisplay(int fd, bool tty, int width, std::string title)
    : fd_(fd), tty_(tty), width_(width > 0 ? width : 80), title_(std::move(title)) {}

ProgressDisplay::~ProgressDisplay() {
  if (!finished_) Finish("");
}

void ProgressDisplay::Write(std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd_, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the display is best effort
    s.remove_prefix(static_cast<size_t>(n));
  }
}

void ProgressDisplay::Update(std::string_view phase, std::string_view detail, int percent) {
  percent = std::max(last_percent_, std::clamp(percent, 0, 100));
  last_percent_ = percent;
  if (tty_) {
    // Leave the last column free: writing into it makes some terminals wrap early.
    std::string line = RenderProgressLine(title_, phase, detail, percent, width_ - 1);
    if (line == last_line_) return;
    last_line_ = line;
    Write("\r" + line + "\x1b[K");
    drawn_ = true;
    return;
  }
  int bucket = percent / 10;
  if (phase == last_phase_ && bucket == last_bucket_) return;
  last_phase_ = std::string(phase);
  last_bucket_ = bucket;
  std::string line = title_ + ": " + std::to_string(percent) + "% " + std::string(phase);
  if (!detail.empty()) line += " (" + Fit(detail, 120) + ")";
  Write(line + "\n");
}

void ProgressDisplay::Finish(std::string_view message) {
  finished_ = true;
  if (tty_ && drawn_) Write("\n");
  drawn_ = false;
  if (!message.empty()) Write(std::string(message) + "\n");
}

}  // namespace kiln::cli
