/* A TCG plugin for QEMU (7.2's plugin API, version 1) that counts executed guest instructions and, when
 * given `stop=ADDR`, writes the count to its log and ends QEMU at the first execution of the
 * instruction at ADDR: "guest instructions until U-Boot first runs this handler", the figure
 * cosim/uboot_oracle.py and cosim/linux_oracle.py hold the harness's count against. Built by
 * cosim/uboot_oracle.py with the system C compiler (no QEMU headers needed: the few entry points used are
 * declared here, as QEMU's plugin ABI defines them: docs/devel/tcg-plugins.rst, include/qemu/qemu-plugin.h).
 *
 *   qemu-system-ppc ... -plugin ./libicount.so,stop=0x0ff9b5dc -d plugin -D count.log
 *
 * The gate (`gate=FILE,uart=PADDR`, both or neither): typing into QEMU in step with the guest's output.
 * QEMU runs the guest in host time, and a driver that types a key when it sees some output can be late:
 * U-Boot then polls its UART (the autoboot countdown, the command prompt) until the key arrives, and the
 * polling counts (0.3 s late at "=> " added 109M instructions). With the gate, the vCPU stops after each
 * store to the UART's transmit register (physical address PADDR; QEMU's serial writes the byte to its
 * stdout, fd 1, during the store, and the plugin's memory callback runs after the access: measured, the
 * byte is often still in the pipe at its first look) until the driver has read everything QEMU wrote
 * (FIONREAD on fd 1 is 0) and is not busy: the 8-byte word at offset 0 of FILE (mmap'd, shared with the
 * driver) is 0. The driver sets that word before it reads, and clears it once it has handled what it read:
 * typed the key that output calls for and seen QEMU take it from the pipe (QEMU's main loop reads stdin
 * and feeds the UART's FIFO under the big QEMU lock, which this vCPU thread does not hold here). So the
 * guest cannot run past the byte that completes the text the driver waits for, and the key is in the FIFO
 * before the guest's next look: the count no longer depends on when the driver ran. The plugin publishes
 * in FILE, for the driver: at offset 8 the transmit stores seen so far, at offset 16 the number of the one
 * the vCPU is held at (0 while it runs). A store to the transmit address with the divisor latch on
 * (U-Boot's UART set-up, 4 per boot) holds too, harmlessly. Under the gate the stop line also gives the
 * stores seen and the time held, in microseconds. (The driver also runs QEMU with -icount, so that
 * U-Boot's timer ticks do not follow the host clock either.) */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
struct qemu_plugin_hwaddr;
typedef struct qemu_info_t qemu_info_t;
typedef uint32_t qemu_plugin_meminfo_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info, uint64_t vaddr,
                                          void *userdata);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                                     void *ptr, uint64_t imm);
extern void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                                   enum qemu_plugin_cb_flags flags, void *userdata);
extern void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op,
                                                       void *ptr, uint64_t imm);
extern void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                             enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
                                             void *userdata);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
extern uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
extern bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
extern struct qemu_plugin_hwaddr *qemu_plugin_get_hwaddr(qemu_plugin_meminfo_t info, uint64_t vaddr);
extern bool qemu_plugin_hwaddr_is_io(const struct qemu_plugin_hwaddr *haddr);
extern uint64_t qemu_plugin_hwaddr_phys_addr(const struct qemu_plugin_hwaddr *haddr);
extern void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t count;        /* instructions of every TB entered (a TB left early counts whole) */
static uint64_t stop_at;
static bool stopping;
static uint64_t uart_thr;     /* the gate: the transmit register's physical address */
static volatile uint64_t *gate;   /* [0] driver busy, [1] transmit stores seen, [2] the one held at */
static uint64_t held_ns;

static void report(const char *why)
{
    char line[160];
    if (gate)
        snprintf(line, sizeof line, "icount %" PRIu64 " %s uart-stores %" PRIu64 " held-us %" PRIu64 "\n",
                 count, why, gate[1], held_ns / 1000);
    else
        snprintf(line, sizeof line, "icount %" PRIu64 " %s\n", count, why);
    qemu_plugin_outs(line);
}

static void at_stop(unsigned int vcpu, void *userdata)
{
    (void)vcpu; (void)userdata;
    if (stopping)
        return;
    stopping = true;
    report("stop");
    _exit(0);
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* After every store (the access is done: the byte is in QEMU's stdout pipe): a transmit store holds the
 * vCPU until the driver has read the pipe dry and is not busy with what it read. */
static void on_store(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *userdata)
{
    struct qemu_plugin_hwaddr *hw;
    struct timespec pause = { 0, 20000 };
    uint64_t t0;
    int unread;
    (void)vcpu; (void)userdata;
    /* QEMU 7.2 calls a QEMU_PLUGIN_MEM_W callback for loads too (measured: the 9 reads of the receive
     * register, at the transmit register's address, counted as transmit stores without this test) */
    if (!qemu_plugin_mem_is_store(info))
        return;
    hw = qemu_plugin_get_hwaddr(info, vaddr);
    if (hw == NULL || !qemu_plugin_hwaddr_is_io(hw) || qemu_plugin_hwaddr_phys_addr(hw) != uart_thr)
        return;
    gate[1] += 1;
    __atomic_store_n(&gate[2], gate[1], __ATOMIC_SEQ_CST);
    t0 = now_ns();
    for (;;) {
        if (ioctl(1, FIONREAD, &unread) != 0)
            unread = 0;
        /* the pipe first, then the flag: the driver raises the flag before it reads */
        if (unread == 0 && __atomic_load_n(&gate[0], __ATOMIC_SEQ_CST) == 0)
            break;
        nanosleep(&pause, NULL);
    }
    held_ns += now_ns() - t0;
    __atomic_store_n(&gate[2], 0, __ATOMIC_SEQ_CST);
}

static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb), i;
    (void)id;
    if (!stop_at && !gate) {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &count, n);
        return;
    }
    /* per instruction, so the count stops exactly before ADDR whatever block it sits in */
    for (i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (stop_at && qemu_plugin_insn_vaddr(insn) == stop_at)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, at_stop, QEMU_PLUGIN_CB_NO_REGS, NULL);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &count, 1);
        if (gate)
            qemu_plugin_register_vcpu_mem_cb(insn, on_store, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_W, NULL);
    }
}

static void at_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id; (void)userdata;
    if (!stopping)
        report("exit");
}

static int open_gate(const char *path)
{
    void *p;
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        fprintf(stderr, "qemu_icount_plugin: gate %s: %s\n", path, strerror(errno));
        return -1;
    }
    p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        fprintf(stderr, "qemu_icount_plugin: gate %s: mmap: %s\n", path, strerror(errno));
        return -1;
    }
    gate = p;
    return 0;
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *gate_path = NULL;
    int i;
    (void)info;
    for (i = 0; i < argc; i++) {
        if (strncmp(argv[i], "stop=", 5) == 0)
            stop_at = strtoull(argv[i] + 5, NULL, 0);
        else if (strncmp(argv[i], "gate=", 5) == 0)
            gate_path = argv[i] + 5;
        else if (strncmp(argv[i], "uart=", 5) == 0)
            uart_thr = strtoull(argv[i] + 5, NULL, 0);
    }
    if ((gate_path == NULL) != (uart_thr == 0)) {
        fprintf(stderr, "qemu_icount_plugin: gate= and uart= go together\n");
        return 1;
    }
    if (gate_path != NULL && open_gate(gate_path) != 0)
        return 1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
