/*
 * QEMU TCG plugin: where the guest instructions of the timed region go, block by block.
 *
 * The companion of insn_count.c (which stays the one source of the whole-model count and its
 * calibrated constants): the same marker syscalls bound the region, and every translation
 * block (TB) gets a record with its guest start address and length. One exec callback per TB
 * adds the TB's length to the running vCPU's total and bumps the record's execution count, so
 * the region's instructions split exactly into (address, length, executions) triples. The host
 * maps each address to a shared object and a symbol (the guest's /proc/self/maps and the
 * object's ELF symbol table: _symbols.py). QEMU 7.2's qemu_plugin_insn_symbol() knows only the
 * main binary's symbols in user mode, not those of dlopen()ed runtimes, hence the host-side map.
 *
 * A TB starts at a branch target and ends at a branch, so it lies inside one function except
 * where a function falls through into the next without a branch (rare; the whole TB is then
 * credited to the first).
 *
 * Operator windows (optional): before its first inference the guest names code addresses with
 * more marker syscalls (lseek(-1, ADDRESS, WHENCE_OPEN | WHENCE_CLOSE_LO | WHENCE_CLOSE_HI)):
 * a block that starts exactly at an "open" address (the entry of XNNPACK's
 * xnn_run_operator_with_index) opens a new operator window, and a block that starts inside a
 * "close" range (xnn_invoke_runtime, the loop that calls it: the block after the call returns)
 * closes it, so what runs between two operators falls into a gap window. Each switch snapshots
 * the blocks' execution counts, so the region's instructions split exactly into the windows,
 * in order. Only blocks translated after the addresses arrived get the switch callbacks: the
 * guest sends them right after importing the runtime, before any inference.
 *
 * Syscall cuts (optional, ONNX Runtime): lseek(-1, NR, WHENCE_CUT) names a syscall number; each
 * such syscall in the region closes the current window and opens a new one, stamped with the
 * host's CLOCK_REALTIME (ns) at the call. With onnxruntime's profiler on, every clock read of
 * its per-node events is a clock_gettime syscall (QEMU 7.2 gives an aarch64 guest no vDSO), so
 * the windows fall between the profiler's timestamps and the host matches them (_ort_windows.py).
 *
 * Output (plugin argument out=PATH), written at the end marker: one JSON object,
 * {"inferences": N, "threads": [{"vcpu": v, "instructions": n}...], "total": {"instructions": n},
 *  "blocks": [[vaddr, insns, executions], ...],
 *  "windows": [{"operator": 0|1, "t_ns": T, "blocks": [[vaddr, insns, executions], ...]}, ...],
 *  "end_ns": T}
 * with the region's deltas only ("windows" empty when neither addresses nor a cut arrived).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define NR_LSEEK_AARCH64 62
#define MAGIC_START UINT64_C(0x45504b5354415254) /* "EPKSTART" */
#define MAGIC_END UINT64_C(0x45504b5f454e4421)   /* "EPK_END!" */
#define MAX_VCPUS 1024
#define WHENCE_OPEN 0x45504b4f     /* "EPKO": a2 is an address that opens an operator window */
#define WHENCE_CLOSE_LO 0x45504b4c /* "EPKL": a2 is the first address of a closing range */
#define WHENCE_CLOSE_HI 0x45504b48 /* "EPKH": a2 is the end (exclusive) of that range */
#define WHENCE_CUT 0x45504b43      /* "EPKC": a2 is a syscall number that cuts windows */
#define MAX_BOUNDS 16

typedef struct {
    uint64_t vaddr;
    uint64_t insns;
    uint64_t execs; /* bumped atomically: any vCPU may run any TB */
    uint64_t start; /* execs at the start marker */
    uint64_t mark;  /* execs at the last window switch */
} Block;

typedef struct {
    int operator;   /* 1: an operator's window; 0: the gap between operators */
    uint64_t t_ns;  /* host CLOCK_REALTIME when the window opened */
    GArray *counts; /* (Block *, executions) pairs, the window's deltas */
} Window;

typedef struct {
    Block *block;
    uint64_t execs;
} Count;

static uint64_t totals[MAX_VCPUS]; /* written only by the owning vCPU's thread */
static uint64_t start_totals[MAX_VCPUS];
static GPtrArray *blocks; /* every TB ever translated (a retranslation adds a record) */
static GMutex lock;       /* guards blocks: translation and the markers, never execution */
static int started;
static int written;
static char *out_path;
static uint64_t opens[MAX_BOUNDS];
static int n_opens;
static uint64_t close_lo[MAX_BOUNDS], close_hi[MAX_BOUNDS];
static int n_closes;
static GPtrArray *windows; /* in order; the last one is the current window */
static int64_t cut_nr = -1; /* the syscall that cuts windows, or -1 */

static uint64_t now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * UINT64_C(1000000000) + (uint64_t)now.tv_nsec;
}

static void tb_exec(unsigned int vcpu_index, void *udata)
{
    Block *block = udata;
    if (vcpu_index >= MAX_VCPUS) {
        vcpu_index = MAX_VCPUS - 1;
    }
    totals[vcpu_index] += block->insns;
    __atomic_fetch_add(&block->execs, 1, __ATOMIC_RELAXED);
}

/* Close the current window with every block's executions since the last switch, and open a
 * new one of the given kind. Called with the lock held. */
static void switch_window(int operator)
{
    Window *current = g_ptr_array_index(windows, windows->len - 1);
    for (guint i = 0; i < blocks->len; i++) {
        Block *block = g_ptr_array_index(blocks, i);
        uint64_t now = __atomic_load_n(&block->execs, __ATOMIC_RELAXED);
        if (now != block->mark) {
            Count count = {block, now - block->mark};
            g_array_append_val(current->counts, count);
            block->mark = now;
        }
    }
    Window *next = g_new0(Window, 1);
    next->operator = operator;
    next->t_ns = now_ns();
    next->counts = g_array_new(FALSE, FALSE, sizeof(Count));
    g_ptr_array_add(windows, next);
}

static void tb_switch(unsigned int vcpu_index, void *udata)
{
    int operator = GPOINTER_TO_INT(udata);
    g_mutex_lock(&lock);
    if (started && !written) {
        Window *current = g_ptr_array_index(windows, windows->len - 1);
        /* An operator always opens a new window; a gap only after an operator. */
        if (operator || current->operator) {
            switch_window(operator);
        }
    }
    g_mutex_unlock(&lock);
}

/* 1: the block opens an operator window; 0: it closes one; -1: neither. */
static int boundary_of(uint64_t vaddr)
{
    for (int i = 0; i < n_opens; i++) {
        if (vaddr == opens[i]) {
            return 1;
        }
    }
    for (int i = 0; i < n_closes; i++) {
        if (vaddr >= close_lo[i] && vaddr < close_hi[i]) {
            return 0;
        }
    }
    return -1;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    Block *block = g_new0(Block, 1); /* lives as long as the TB may run: never freed */
    block->vaddr = qemu_plugin_tb_vaddr(tb);
    block->insns = qemu_plugin_tb_n_insns(tb);
    g_mutex_lock(&lock);
    g_ptr_array_add(blocks, block);
    int boundary = boundary_of(block->vaddr);
    g_mutex_unlock(&lock);
    if (boundary >= 0) { /* before the block's own count: it belongs to the new window */
        qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_switch, QEMU_PLUGIN_CB_NO_REGS,
                                             GINT_TO_POINTER(boundary));
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, block);
}

static void mark_start(void)
{
    g_mutex_lock(&lock);
    for (guint i = 0; i < blocks->len; i++) {
        Block *block = g_ptr_array_index(blocks, i);
        block->start = __atomic_load_n(&block->execs, __ATOMIC_RELAXED);
        block->mark = block->start;
    }
    Window *first = g_new0(Window, 1);
    first->t_ns = now_ns();
    first->counts = g_array_new(FALSE, FALSE, sizeof(Count));
    g_ptr_array_add(windows, first);
    memcpy(start_totals, totals, sizeof(start_totals));
    started = 1;
    g_mutex_unlock(&lock);
}

static void write_region(uint64_t inferences)
{
    uint64_t end_ns = now_ns();
    FILE *f = fopen(out_path, "w");
    if (f == NULL) {
        qemu_plugin_outs("insn_profile: cannot open the out= file\n");
        return;
    }
    uint64_t total = 0;
    fprintf(f, "{\"inferences\": %" PRIu64 ", \"threads\": [", inferences);
    int first = 1;
    for (unsigned int v = 0; v < MAX_VCPUS; v++) {
        uint64_t delta = totals[v] - start_totals[v];
        total += delta;
        if (delta == 0) {
            continue;
        }
        fprintf(f, "%s{\"vcpu\": %u, \"instructions\": %" PRIu64 "}", first ? "" : ", ", v,
                delta);
        first = 0;
    }
    fprintf(f, "], \"total\": {\"instructions\": %" PRIu64 "}, \"blocks\": [", total);
    first = 1;
    g_mutex_lock(&lock);
    for (guint i = 0; i < blocks->len; i++) {
        Block *block = g_ptr_array_index(blocks, i);
        uint64_t runs = __atomic_load_n(&block->execs, __ATOMIC_RELAXED) - block->start;
        if (runs == 0) {
            continue;
        }
        fprintf(f, "%s[%" PRIu64 ", %" PRIu64 ", %" PRIu64 "]", first ? "" : ", ", block->vaddr,
                block->insns, runs);
        first = 0;
    }
    fprintf(f, "], \"windows\": [");
    if (n_opens > 0 || cut_nr >= 0) {
        switch_window(0); /* closes the last window; the new empty one is not written */
        for (guint w = 0; w + 1 < windows->len; w++) {
            Window *window = g_ptr_array_index(windows, w);
            fprintf(f, "%s{\"operator\": %d, \"t_ns\": %" PRIu64 ", \"blocks\": [", w ? ", " : "",
                    window->operator, window->t_ns);
            for (guint i = 0; i < window->counts->len; i++) {
                Count *count = &g_array_index(window->counts, Count, i);
                fprintf(f, "%s[%" PRIu64 ", %" PRIu64 ", %" PRIu64 "]", i ? ", " : "",
                        count->block->vaddr, count->block->insns, count->execs);
            }
            fprintf(f, "]}");
        }
    }
    g_mutex_unlock(&lock);
    fprintf(f, "], \"end_ns\": %" PRIu64 "}\n", end_ns);
    fclose(f);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    if (num == cut_nr) {
        g_mutex_lock(&lock);
        if (started && !written) {
            switch_window(1);
        }
        g_mutex_unlock(&lock);
        return;
    }
    if (num != NR_LSEEK_AARCH64 || a1 != UINT64_MAX) {
        return;
    }
    if (a3 == WHENCE_CUT) {
        cut_nr = (int64_t)a2;
        return;
    }
    if (a3 == WHENCE_OPEN || a3 == WHENCE_CLOSE_LO || a3 == WHENCE_CLOSE_HI) {
        g_mutex_lock(&lock);
        if (a3 == WHENCE_OPEN && n_opens < MAX_BOUNDS) {
            opens[n_opens++] = a2;
        } else if (a3 == WHENCE_CLOSE_LO && n_closes < MAX_BOUNDS) {
            close_lo[n_closes] = a2;
            close_hi[n_closes] = a2; /* empty until its end arrives */
        } else if (a3 == WHENCE_CLOSE_HI && n_closes < MAX_BOUNDS) {
            close_hi[n_closes++] = a2;
        }
        g_mutex_unlock(&lock);
        return;
    }
    if (a2 == MAGIC_START) {
        mark_start();
    } else if (a2 == MAGIC_END && started && !written) {
        write_region(a3);
        written = 1;
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (g_str_has_prefix(argv[i], "out=")) {
            out_path = g_strdup(argv[i] + 4);
        } else {
            fprintf(stderr, "insn_profile: unknown argument %s (expected out=PATH)\n", argv[i]);
            return -1;
        }
    }
    if (out_path == NULL) {
        fprintf(stderr, "insn_profile: missing argument out=PATH\n");
        return -1;
    }
    blocks = g_ptr_array_new();
    windows = g_ptr_array_new();
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    return 0;
}
