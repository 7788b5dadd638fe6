/*
 * QEMU TCG plugin: count guest instructions per guest thread between two marker syscalls.
 *
 * The guest benchmark marks the timed region with lseek(-1, MAGIC_START, SEEK_SET) and
 * lseek(-1, MAGIC_END, N): an lseek on fd -1 fails with EBADF and does nothing, so the
 * markers cost the guest two syscalls and need no extra library (a Python script can emit
 * them with os.lseek). N, the number of inferences in the region, rides in the third argument.
 *
 * Counting: at translation time every translation block (TB) is classified once, instruction
 * by instruction (SIMD/FP, loads/stores, branches, other scalar), and one exec callback per TB
 * adds those figures to the counters of the thread (vCPU) that runs it. QEMU 7.2 has no
 * per-vCPU inline counters, and an inline add to one shared counter would race between
 * threads, so a callback per TB is the cheapest correct route here.
 *
 * Output (plugin argument out=PATH), written at the end marker: one JSON object with the
 * totals and the per-thread deltas of the region.
 *
 * Built against qemu-plugin.h from Debian's QEMU source package (Debian ships no plugin .so).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define NR_LSEEK_AARCH64 62
#define MAGIC_START UINT64_C(0x45504b5354415254) /* "EPKSTART" */
#define MAGIC_END UINT64_C(0x45504b5f454e4421)   /* "EPK_END!" */
#define MAX_VCPUS 1024

enum { INSNS, SIMD, MEM, BRANCH, NCLASS };
static const char *class_names[NCLASS] = {"instructions", "simd_fp", "load_store", "branch"};

typedef struct {
    uint64_t c[NCLASS];
} Counts;

static Counts counts[MAX_VCPUS];  /* written only by the owning vCPU's thread */
static Counts start[MAX_VCPUS];   /* snapshot at the start marker */
static int started;
static int written;
static char *out_path;

/* A64 top-level encoding groups (Arm ARM C4.1, op0 = bits 28:25). */
static int classify(uint32_t insn)
{
    uint32_t op0 = (insn >> 25) & 0xf;
    if ((op0 & 0x7) == 0x7) {
        return SIMD; /* x111: data processing, SIMD and floating point */
    }
    if ((op0 & 0x5) == 0x4) {
        return MEM; /* x1x0: loads and stores (scalar and SIMD) */
    }
    if ((op0 & 0xe) == 0xa) {
        return BRANCH; /* 101x: branches, exception generation, system */
    }
    return INSNS; /* data processing, immediate and register */
}

static void tb_exec(unsigned int vcpu_index, void *udata)
{
    const Counts *tb = udata;
    if (vcpu_index >= MAX_VCPUS) {
        vcpu_index = MAX_VCPUS - 1; /* pooled: per-thread split lost, total still right */
    }
    Counts *mine = &counts[vcpu_index];
    for (int i = 0; i < NCLASS; i++) {
        mine->c[i] += tb->c[i];
    }
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    Counts *info = g_new0(Counts, 1); /* lives as long as the TB may run: never freed */
    info->c[INSNS] = n;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t word;
        memcpy(&word, qemu_plugin_insn_data(insn), sizeof(word));
        int kind = classify(word);
        if (kind != INSNS) {
            info->c[kind]++;
        }
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, info);
}

static void write_region(uint64_t inferences)
{
    FILE *f = fopen(out_path, "w");
    if (f == NULL) {
        qemu_plugin_outs("insn_count: cannot open the out= file\n");
        return;
    }
    Counts total = {{0}};
    fprintf(f, "{\"inferences\": %" PRIu64 ", \"threads\": [", inferences);
    int first = 1;
    for (unsigned int v = 0; v < MAX_VCPUS; v++) {
        Counts d;
        for (int i = 0; i < NCLASS; i++) {
            d.c[i] = counts[v].c[i] - start[v].c[i];
            total.c[i] += d.c[i];
        }
        if (d.c[INSNS] == 0) {
            continue;
        }
        fprintf(f, "%s{\"vcpu\": %u", first ? "" : ", ", v);
        for (int i = 0; i < NCLASS; i++) {
            fprintf(f, ", \"%s\": %" PRIu64, class_names[i], d.c[i]);
        }
        fprintf(f, "}");
        first = 0;
    }
    fprintf(f, "], \"total\": {");
    for (int i = 0; i < NCLASS; i++) {
        fprintf(f, "%s\"%s\": %" PRIu64, i ? ", " : "", class_names[i], total.c[i]);
    }
    fprintf(f, "}}\n");
    fclose(f);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    if (num != NR_LSEEK_AARCH64 || a1 != UINT64_MAX) {
        return;
    }
    if (a2 == MAGIC_START) {
        /* Other threads may be running; with one thread (the deterministic setting) the
         * snapshot is exact. */
        memcpy(start, counts, sizeof(start));
        started = 1;
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
            fprintf(stderr, "insn_count: unknown argument %s (expected out=PATH)\n", argv[i]);
            return -1;
        }
    }
    if (out_path == NULL) {
        fprintf(stderr, "insn_count: missing argument out=PATH\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    return 0;
}
