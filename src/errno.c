/*
 * errno.c - mproc_strerror() and mproc_err_name(), generated from the one
 * table in include/mproc/errno.h so they cannot drift from the codes.
 */
#include "internal.h"

const char *mproc_strerror(int code) {
  if (code == 0) {
    return "success";
  }
  switch (code) {
#define MPROC__ERR_MSG(name, value, msg)                                      \
  case (value):                                                               \
    return msg;
    MPROC_ERRNO_MAP(MPROC__ERR_MSG)
#undef MPROC__ERR_MSG
    default:
      return "unknown error";
  }
}

const char *mproc_err_name(int code) {
  if (code == 0) {
    return "MPROC_OK";
  }
  switch (code) {
#define MPROC__ERR_NAME(name, value, msg)                                     \
  case (value):                                                               \
    return "MPROC_" #name;
    MPROC_ERRNO_MAP(MPROC__ERR_NAME)
#undef MPROC__ERR_NAME
    default:
      return "MPROC_UNKNOWN";
  }
}
