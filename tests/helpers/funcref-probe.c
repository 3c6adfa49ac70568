/*
 * tests/helpers/funcref-probe.c - the library of test-funcref.c, built
 * twice (libfuncref_a.so, libfuncref_b.so) with another FUNCREF_PROBE_VALUE
 * each.  Both builds have the same soname and the same symbol; only their
 * code differs, and with it their GNU build-id, as for a library that was
 * rebuilt and replaced on disk while a program that loaded it still runs.
 */
#ifndef FUNCREF_PROBE_VALUE
#error "build with -DFUNCREF_PROBE_VALUE=N"
#endif

int funcref_probe(void);

/* The number that tells which build a process called into. */
int funcref_probe(void) { return FUNCREF_PROBE_VALUE; }
