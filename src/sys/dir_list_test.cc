#include "sys/dir_list.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "base/unique_fd.h"

namespace kiln::sys {
namespace {

TEST(ListDirNamesTest, ListsEntriesAndKeepsTheFdUsable) {
  auto dir = std::filesystem::temp_directory_path() / ("kiln-dirlist-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir / "sub");
  std::ofstream(dir / "a.txt") << "a";
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(fd);
  for (int round = 0; round < 2; ++round) {  // a second listing starts from the beginning too
    auto names = ListDirNames(fd.get(), dir.string());
    ASSERT_TRUE(names) << names.error().message();
    std::sort(names->begin(), names->end());
    EXPECT_EQ(*names, (std::vector<std::string>{"a.txt", "sub"}));
  }
  EXPECT_EQ(faccessat(fd.get(), "a.txt", F_OK, 0), 0);
  UniqueFd file(open((dir / "a.txt").c_str(), O_RDONLY | O_CLOEXEC));
  auto bad = ListDirNames(file.get(), "a.txt");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("a.txt"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiln::sys
