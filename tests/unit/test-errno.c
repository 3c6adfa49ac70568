/* tests/unit/test-errno.c - the error table, strerror and err_name. */
#include "task.h"

#include <errno.h>

TEST_IMPL(errno_codes_match_errno) {
  ASSERT_EQ(MPROC_ETIMEDOUT, -ETIMEDOUT);
  ASSERT_EQ(MPROC_EAGAIN, -EAGAIN);
  ASSERT_EQ(MPROC_EINVAL, -EINVAL);
  ASSERT_EQ(MPROC_ENOMEM, -ENOMEM);
  ASSERT_EQ(MPROC_EOWNERDEAD, -EOWNERDEAD);
  /* Library codes sit in a range no errno reaches. */
  ASSERT_LE(MPROC_EOF, -5000);
  ASSERT_LE(MPROC_EWORKERDIED, -5000);
  ASSERT_GT(MPROC_EOF, -6000);
  return 0;
}

TEST_IMPL(errno_strerror_and_name) {
  ASSERT_STR_EQ(mproc_err_name(MPROC_ETIMEDOUT), "MPROC_ETIMEDOUT");
  ASSERT_STR_EQ(mproc_err_name(MPROC_ESTARTED), "MPROC_ESTARTED");
  ASSERT_STR_EQ(mproc_err_name(0), "MPROC_OK");
  ASSERT_STR_EQ(mproc_err_name(-4999), "MPROC_UNKNOWN");
  ASSERT_STR_EQ(mproc_strerror(MPROC_ESTARTED),
                "cannot start a process twice");
  ASSERT_STR_EQ(mproc_strerror(MPROC_ETIMEDOUT), "timed out");
  ASSERT_STR_EQ(mproc_strerror(12345), "unknown error");
  ASSERT_NOT_NULL(mproc_strerror(INT32_MIN));
  return 0;
}

TEST_IMPL(errno_names_are_unique) {
  static const int codes[] = {
#define X(name, value, msg) value,
      MPROC_ERRNO_MAP(X)
#undef X
  };
  size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; i++) {
    ASSERT_LT(codes[i], 0);
    ASSERT_STR_EQ(mproc_err_name(codes[i]) + 0, mproc_err_name(codes[i]));
    ASSERT(strcmp(mproc_err_name(codes[i]), "MPROC_UNKNOWN") != 0);
    for (size_t j = i + 1; j < n; j++) {
      ASSERT_NE(codes[i], codes[j]);
    }
  }
  return 0;
}

TEST_IMPL(version_matches_header) {
  ASSERT_EQ(mproc_version(), MPROC_VERSION_HEX);
  ASSERT_STR_EQ(mproc_version_string(), MPROC_VERSION_STRING);
  return 0;
}
