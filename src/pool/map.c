/*
 * src/pool/map.c - map, map_async, map_bytes and imap (the parent's
 * side of a map job: its arena arrays, the iterator), and the
 * progress bar.
 *
 * DESIGN
 *
 * A map is one job (job.c) over arrays in the arena: the input (the
 * caller's own when it is arena memory), the output (in place when the
 * caller's is arena memory) and one state byte per unit.  map_bytes is
 * one apply task per item.  An imap's iterator reads the arrays while
 * the workers fill them, and sleeps on the job's sequence word.
 */
#include "pool-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ==================== progress bar ==================== */

/* Draw "[#####     ]  500/1000 items  1.2 k/s  ETA 0:04" on stderr (a
 * terminal: the callers check), over the previous one; `last` ends the
 * line.  One write, so it does not interleave within itself. */
static void progress_draw(size_t done, size_t n, uint64_t t0, int last) {
  char bar[32];
  size_t width = sizeof bar - 1;
  size_t fill = n > 0 ? done * width / n : width;
  for (size_t i = 0; i < width; i++) {
    bar[i] = i < fill ? '#' : ' ';
  }
  bar[width] = '\0';
  double el = (double)(mproc__now_ns() - t0) / 1e9;
  double rate = el > 0 ? (double)done / el : 0;
  char eta[32] = "--:--";
  if (rate > 0 && done < n) {
    long left = (long)((double)(n - done) / rate + 0.5);
    snprintf(eta, sizeof eta, "%ld:%02ld", left / 60, left % 60);
  } else if (done >= n) {
    long e = (long)(el + 0.5);
    snprintf(eta, sizeof eta, "%ld:%02ld", e / 60, e % 60);
  }
  const char *unit = "";
  double shown = rate;
  if (shown >= 1e6) {
    shown /= 1e6;
    unit = " M";
  } else if (shown >= 1e3) {
    shown /= 1e3;
    unit = " k";
  }
  char line[160];
  int len = snprintf(line, sizeof line, "\r[%s] %zu/%zu items  %.1f%s/s  %s %s%s",
                     bar, done, n, shown, unit, done >= n ? "in" : "ETA", eta,
                     last ? "\n" : "");
  if (len > 0) {
    ssize_t w = write(STDERR_FILENO, line, (size_t)len < sizeof line
                                               ? (size_t)len
                                               : sizeof line - 1);
    (void)w;
  }
}

/* ==================== map ==================== */

/*
 * Start a map: copy the input into the arena (unless it is arena memory),
 * allocate the arena output, queue one task per chunk.  For imap
 * (is_imap), out is NULL and the results stay in the arena for
 * mproc_imap_next, with each item's code and each chunk's completion
 * recorded.  Returns 0 and *rout (the caller's reference), or an error
 * with nothing left allocated.
 */
static int map_start(mproc_pool *p, mproc_map_fn fn, void *ctx,
                     const void *in, size_t n, size_t in_size, void *out,
                     size_t out_size, const mproc_map_opts *opts,
                     int is_imap, mproc_async **rout) {
  if (rout != NULL) {
    *rout = NULL;
  }
  if (p == NULL || fn == NULL || rout == NULL ||
      (n > 0 && (in == NULL || in_size == 0 ||
                 (!is_imap && out == NULL && out_size > 0))) ||
      (opts != NULL && opts->chunksize < MPROC_CHUNK_ADAPTIVE)) {
    return MPROC_EINVAL;
  }
  if (p->owner != getpid()) {
    return MPROC_EFORKED;
  }
  int prc = mproc__pool_check_portable(p, (const void *)fn, ctx);
  if (prc != 0) {
    return prc;
  }
  if (n > 0 && (in_size > SIZE_MAX / n || (out_size > 0 && out_size > SIZE_MAX / n))) {
    return MPROC_EOVERFLOW;
  }
  if (n > 0 && out != NULL && out_size > 0) {
    /* In place is out == in record for record; any other overlap would
     * have an item's result overwrite another item's input. */
    uintptr_t a = (uintptr_t)in, b = (uintptr_t)out;
    int overlap = a < b + n * out_size && b < a + n * in_size;
    if (overlap && !(a == b && in_size == out_size)) {
      return MPROC_EINVAL;
    }
  }
  mproc_async *r = mproc__pool_async_new(p, TK_JOB);
  if (r == NULL) {
    return MPROC_ENOMEM;
  }
  if (opts != NULL) {
    r->cb = opts->callback;
    r->ecb = opts->error_callback;
    r->user = opts->user;
  }
  r->n = n;
  r->out = out;
  r->out_size = out_size;
  r->is_imap = is_imap;
  if (n == 0) {
    pthread_mutex_lock(&p->mu);
    int closed = p->closed;
    if (!closed) {
      p->outstanding++;
    }
    pthread_mutex_unlock(&p->mu);
    if (closed) {
      free(r);
      return MPROC_ECLOSED;
    }
    mproc__pool_async_finish(p, r);
    *rout = r;
    return 0;
  }
  size_t unit = opts != NULL && opts->chunksize > 0 ? (size_t)opts->chunksize
                                                    : 0;
  int adaptive = opts != NULL && opts->chunksize == MPROC_CHUNK_ADAPTIVE;
  if (adaptive) {
    unit = 1; /* claims of several units, sized as the map runs */
  } else if (unit == 0) {
    /* Python's formula: divmod(len, 4 * workers), rounded up. */
    size_t d = 4 * (size_t)p->nworkers;
    unit = (n + d - 1) / d;
  }
  size_t nunits = (n + unit - 1) / unit;
  r->unit = unit;
  r->nunits = nunits;
  r->progress = opts != NULL && opts->progress;
  int rc = 0;
  if (mproc_arena_contains(in)) {
    r->ain = (char *)in;
  } else {
    rc = mproc_shm_alloc((void **)&r->ain, n * in_size);
    if (rc == 0) {
      r->in_owned = 1;
      memcpy(r->ain, in, n * in_size);
    }
  }
  if (rc == 0 && !is_imap && out_size > 0 && mproc_arena_contains(out) &&
      mproc_arena_contains((char *)out + n * out_size - 1)) {
    /* Results straight into the caller's arena memory: no copy out. */
    r->aout = out;
    r->out_in_place = 1;
  } else if (rc == 0) {
    rc = mproc_shm_alloc((void **)&r->aout, out_size > 0 ? n * out_size : 1);
  }
  if (rc == 0) {
    rc = mproc_shm_calloc((void **)&r->ustate, nunits, 1);
  }
  if (rc == 0 && is_imap) {
    rc = mproc_shm_calloc((void **)&r->icodes, n, sizeof(int));
    if (rc == 0) {
      rc = mproc_shm_calloc((void **)&r->dead_from, nunits, sizeof(size_t));
    }
    if (rc == 0) {
      rc = mproc_shm_calloc((void **)&r->uerr, nunits, sizeof(int));
    }
    if (rc == 0) {
      rc = mproc_shm_calloc((void **)&r->order, nunits, sizeof(size_t));
    }
    if (rc == 0) {
      rc = mproc_shm_calloc((void **)&r->ish, 1, sizeof(imapsh));
    }
  }
  shtask *st = NULL;
  if (rc == 0) {
    rc = mproc_shm_alloc((void **)&st, sizeof(shtask));
  }
  if (rc == 0) {
    memset(st, 0, offsetof(shtask, msg) + 1);
    st->kind = TK_JOB;
    st->mfn = fn;
    st->ctx = ctx;
    st->in = r->ain;
    st->out = r->aout;
    st->in_size = in_size;
    st->out_size = out_size;
    st->n = n;
    st->unit = unit;
    st->nunits = nunits;
    st->adaptive = adaptive;
    st->nworkers = p->nworkers;
    st->ustate = r->ustate;
    st->icodes = r->icodes;
    st->dead_from = r->dead_from;
    st->uerr = r->uerr;
    st->order = r->order;
    st->ish = r->ish;
    st->owner = r;
    atomic_init(&st->next_unit, 0);
    rc = mproc__pool_submit(p, &st, 1, nunits);
    if (rc != 0) {
      mproc_shm_free(st);
    }
  }
  if (rc != 0) {
    if (!r->in_owned) {
      r->ain = NULL;
    }
    r->progress = 0; /* nobody draws: free the unit states too */
    mproc__pool_imap_release_arrays(r, NULL);
    free(r);
    return rc;
  }
  *rout = r;
  return 0;
}

int mproc_pool_map(mproc_pool *p, mproc_map_fn fn, void *ctx, const void *in,
                   size_t n, size_t in_size, void *out, size_t out_size,
                   const mproc_map_opts *opts, mproc_map_error *err) {
  mproc_map_opts o;
  memset(&o, 0, sizeof o);
  if (opts != NULL) {
    o.chunksize = opts->chunksize;
    o.progress = opts->progress;
  }
  mproc_async *r;
  int rc = map_start(p, fn, ctx, in, n, in_size, out, out_size, &o, 0, &r);
  if (rc != 0) {
    return rc;
  }
  /* With progress on, the unit states stay until freed below (see
   * mproc__pool_imap_release_arrays), even if the map is over already. */
  unsigned char *ustate = r->progress ? r->ustate : NULL;
  if (ustate != NULL && isatty(STDERR_FILENO)) {
    uint64_t t0 = mproc__now_ns();
    while (mproc_async_wait(r, 0.2) != 0) {
      size_t units = 0;
      for (size_t u = 0; u < r->nunits; u++) {
        units += __atomic_load_n(&ustate[u], __ATOMIC_RELAXED) != 0;
      }
      size_t done = units * r->unit < n ? units * r->unit : n;
      progress_draw(done, n, t0, 0);
    }
    progress_draw(n, n, t0, 1);
  }
  rc = mproc_async_get(r, MPROC_FOREVER);
  if (err != NULL) {
    if (r->has_merr) {
      *err = r->merr;
    } else {
      memset(err, 0, sizeof *err);
    }
  }
  mproc_shm_free(ustate);
  mproc_async_free(r);
  return rc;
}

int mproc_async_map_error(const mproc_async *r, mproc_map_error *err) {
  if (err == NULL || !mproc_async_ready(r) || r->kind != TK_JOB ||
      !r->has_merr) {
    return MPROC_ESTATE;
  }
  *err = r->merr;
  return 0;
}

int mproc_pool_map_bytes(mproc_pool *p, mproc_task_fn fn, void *ctx,
                         const mproc_bytes *args, size_t n,
                         mproc_result *results, const mproc_map_opts *opts) {
  (void)opts;
  if (p == NULL || fn == NULL || (n > 0 && (args == NULL || results == NULL))) {
    return MPROC_EINVAL;
  }
  mproc_async **rs = calloc(n > 0 ? n : 1, sizeof *rs);
  if (rs == NULL) {
    return MPROC_ENOMEM;
  }
  int rc = 0;
  size_t made = 0;
  for (; made < n; made++) {
    rc = mproc_pool_apply_async(p, fn, ctx, args[made].data, args[made].len,
                                NULL, &rs[made]);
    if (rc != 0) {
      break;
    }
  }
  int first = 0;
  for (size_t i = 0; i < made; i++) {
    int e = mproc_async_get(rs[i], MPROC_FOREVER);
    results[i].data = NULL;
    results[i].len = 0;
    results[i].error = e;
    results[i].task_code = rs[i]->task_code;
    if (e == 0) {
      results[i].data = rs[i]->data;
      results[i].len = rs[i]->len;
      rs[i]->data = NULL;
    } else if (first == 0) {
      first = e;
    }
    mproc_async_free(rs[i]);
  }
  free(rs);
  return rc != 0 ? rc : first;
}

int mproc_pool_map_async(mproc_pool *p, mproc_map_fn fn, void *ctx,
                         const void *in, size_t n, size_t in_size, void *out,
                         size_t out_size, const mproc_map_opts *opts,
                         mproc_async **rout) {
  /* The bar is mproc_pool_map's alone (nobody waits here to draw it),
   * and r->progress tells the completion that a drawer frees the unit
   * states: clear it. */
  mproc_map_opts o;
  if (opts != NULL) {
    o = *opts;
    o.progress = 0;
    opts = &o;
  }
  return map_start(p, fn, ctx, in, n, in_size, out, out_size, opts, 0, rout);
}

/* ==================== imap ==================== */

int mproc_pool_imap(mproc_pool *p, mproc_map_fn fn, void *ctx,
                    const void *in, size_t n, size_t in_size, size_t out_size,
                    long chunksize, int unordered, mproc_imap **out) {
  if (out == NULL || chunksize < 0) {
    return MPROC_EINVAL;
  }
  *out = NULL;
  mproc_imap *it = calloc(1, sizeof *it);
  if (it == NULL) {
    return MPROC_ENOMEM;
  }
  mproc_map_opts o;
  memset(&o, 0, sizeof o);
  o.chunksize = chunksize > 0 ? chunksize : 1;
  int rc = map_start(p, fn, ctx, in, n, in_size, NULL, out_size, &o, 1,
                     &it->r);
  if (rc != 0) {
    free(it);
    return rc;
  }
  it->unordered = unordered != 0;
  if (it->unordered && n > 0) {
    it->seen = calloc(it->r->nunits, 1);
    if (it->seen == NULL) {
      mproc_imap_free(it);
      return MPROC_ENOMEM;
    }
  }
  *out = it;
  return 0;
}

int mproc_imap_task_code(const mproc_imap *it) {
  return it != NULL ? it->last_code : 0;
}

int mproc_imap_progress(mproc_imap *it, int on) {
  if (it == NULL) {
    return MPROC_EINVAL;
  }
  it->progress = on != 0 && isatty(STDERR_FILENO);
  it->t0 = mproc__now_ns();
  it->drawn = 0;
  return 0;
}

/* Take up unit u for delivery (unordered). */
static int imap_take_unit(mproc_imap *it, size_t u) {
  if (it->seen[u]) {
    return 0;
  }
  it->seen[u] = 1;
  it->cu = u + 1;
  it->citem = u * it->r->unit;
  return 1;
}

/* The next item to deliver, if its unit is finished: 1 and *item, or 0. */
static int imap_find(mproc_imap *it, size_t *item) {
  mproc_async *r = it->r;
  if (!it->unordered) {
    size_t u = it->next / r->unit;
    if (__atomic_load_n(&r->ustate[u], __ATOMIC_ACQUIRE) == U_PENDING) {
      return 0;
    }
    *item = it->next++;
    return 1;
  }
  for (;;) {
    if (it->cu != 0) {
      size_t u = it->cu - 1;
      size_t end = (u + 1) * r->unit < r->n ? (u + 1) * r->unit : r->n;
      *item = it->citem++;
      if (it->citem >= end) {
        it->cu = 0;
      }
      return 1;
    }
    int fin = atomic_load(&r->ish->finished);
    size_t norder = atomic_load(&r->ish->norder);
    int took = 0;
    while (it->ocur < norder && it->ocur < r->nunits) {
      size_t v = __atomic_load_n(&r->order[it->ocur], __ATOMIC_ACQUIRE);
      if (v == 0 && !fin) {
        break; /* being written; or a hole a killed worker left */
      }
      it->ocur++;
      if (v != 0 && imap_take_unit(it, v - 1)) {
        took = 1;
        break;
      }
    }
    if (took) {
      continue;
    }
    if (!fin) {
      return 0;
    }
    /* The job is over: units a killed worker finished without listing. */
    while (it->scan < r->nunits && !took) {
      took = imap_take_unit(it, it->scan++);
    }
    if (!took) {
      return 0;
    }
  }
}

int mproc_imap_next(mproc_imap *it, void *out, size_t *index,
                    double timeout) {
  if (it == NULL || (out == NULL && it->r->out_size > 0) ||
      timeout != timeout) {
    return MPROC_EINVAL;
  }
  mproc_async *r = it->r;
  if (it->delivered == r->n) {
    return MPROC_EOF;
  }
  mproc__deadline d;
  if (mproc__deadline_init(&d, timeout) != 0) {
    return MPROC_EINVAL;
  }
  size_t item;
  imapsh *ish = r->ish;
  while (!imap_find(it, &item)) {
    /* Sleep on the job's sequence word: raise `waiting`, look again,
     * sleep while the word is unchanged (a worker bumps it after marking
     * units, then wakes if it sees `waiting`). */
    uint32_t seq = atomic_load(&ish->seq);
    atomic_store(&ish->waiting, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (imap_find(it, &item)) {
      atomic_store(&ish->waiting, 0);
      break;
    }
    if (mproc__deadline_left_ns(&d) == 0 && !d.forever) {
      atomic_store(&ish->waiting, 0);
      return MPROC_ETIMEDOUT;
    }
    mproc__deadline slice = d;
    if (it->progress) {
      mproc__deadline_init(&slice, 0.2);
      if (!d.forever && d.at_ns < slice.at_ns) {
        slice = d;
      }
      progress_draw(it->delivered, r->n, it->t0, 0);
    }
    mproc__futex_wait((uint32_t *)&ish->seq, seq, &slice);
    atomic_store(&ish->waiting, 0);
  }
  size_t u = item / r->unit;
  int err = 0;
  it->last_code = 0;
  if (__atomic_load_n(&r->ustate[u], __ATOMIC_ACQUIRE) == U_LOST &&
      item >= r->dead_from[u]) {
    err = r->uerr[u];
  } else if (r->icodes[item] != 0) {
    err = MPROC_ETASK;
    it->last_code = r->icodes[item];
  }
  it->delivered++;
  if (it->progress) {
    uint64_t now = mproc__now_ns();
    if (it->delivered == r->n || now - it->drawn >= 200000000ull) {
      it->drawn = now;
      progress_draw(it->delivered, r->n, it->t0, it->delivered == r->n);
    }
  }
  if (index != NULL) {
    *index = item;
  }
  if (r->out_size > 0) {
    memcpy(out, r->aout + item * r->out_size, r->out_size);
  }
  return err;
}

int mproc_imap_free(mproc_imap *it) {
  if (it == NULL) {
    return 0;
  }
  mproc_async *r = it->r;
  /* Once ready, the result thread no longer touches r (and the pool may
   * be gone); before, whichever of the two comes last frees the arrays. */
  int mine = atomic_load(&r->ready);
  if (!mine) {
    mproc_pool *p = r->pool;
    pthread_mutex_lock(&p->mu);
    mine = r->all_done;
    if (!mine) {
      r->abandoned = 1;
    }
    pthread_mutex_unlock(&p->mu);
  }
  if (mine) {
    mproc__pool_imap_release_arrays(r, NULL);
  }
  mproc__pool_async_unref(r);
  free(it->seen);
  free(it);
  return 0;
}
