#!/bin/sh
# tests/lint/check-layering.sh SOURCE_DIR - the layering rule of DESIGN.md:
# only src/platform/ may call syscall(), include a <linux/...> header or
# <sys/syscall.h>, or test __linux__.  Everything else reaches the OS
# through src/platform/platform.h.
src="$1/src"
bad=$(grep -rnE 'syscall\(|#include <linux/|#include <sys/syscall\.h>|__linux__' \
        "$src" --include='*.c' --include='*.h' | grep -v "^$src/platform/")
if [ -n "$bad" ]; then
  echo "layering violation: OS details outside src/platform/:"
  echo "$bad"
  exit 1
fi
echo "layering ok"
