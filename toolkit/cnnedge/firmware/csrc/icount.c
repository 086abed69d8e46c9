/* A QEMU TCG plugin (plugin API version 1, QEMU 7.x) that counts the guest instructions executed
 * between two marker functions: every translated block adds its instruction count to a counter
 * inline; entering the block at `begin` snapshots the counter, entering `end` adds the difference
 * to the window total. At exit it prints "icount total=T windows=N window_insns=W".
 * The API is declared here (QEMU ships no header for it in Debian's packages). */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct {
  char *target_name;
  struct { int min; int cur; } version;
  bool system_emulation;
  union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, qemu_plugin_vcpu_tb_trans_cb_t);
extern void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *, qemu_plugin_vcpu_udata_cb_t,
                                                 enum qemu_plugin_cb_flags, void *);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op,
                                                     void *, uint64_t);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
extern uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, qemu_plugin_udata_cb_t, void *);
extern void qemu_plugin_outs(const char *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t insns, start, window_insns, windows, begin_pc = UINT64_MAX, end_pc = UINT64_MAX;

static void on_begin(unsigned int vcpu, void *u) { start = insns; }
static void on_end(unsigned int vcpu, void *u) { window_insns += insns - start; windows++; }

static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  uint64_t pc = qemu_plugin_tb_vaddr(tb) & ~(uint64_t)1;
  /* A marker block is a few instructions; whether its own count lands inside the window
   * depends on the order QEMU runs a block's callbacks in: at most a few instructions. */
  if (pc == begin_pc) qemu_plugin_register_vcpu_tb_exec_cb(tb, on_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
  if (pc == end_pc) qemu_plugin_register_vcpu_tb_exec_cb(tb, on_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns,
                                           qemu_plugin_tb_n_insns(tb));
}

static void at_exit(qemu_plugin_id_t id, void *u) {
  char line[160];
  snprintf(line, sizeof line, "icount total=%" PRIu64 " windows=%" PRIu64 " window_insns=%" PRIu64 "\n",
           insns, windows, window_insns);
  qemu_plugin_outs(line);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  for (int i = 0; i < argc; i++) {
    if (strncmp(argv[i], "begin=", 6) == 0) begin_pc = strtoull(argv[i] + 6, NULL, 0) & ~1ULL;
    if (strncmp(argv[i], "end=", 4) == 0) end_pc = strtoull(argv[i] + 4, NULL, 0) & ~1ULL;
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
  qemu_plugin_register_atexit_cb(id, at_exit, NULL);
  return 0;
}
