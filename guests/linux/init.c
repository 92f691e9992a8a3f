/* /init of the Linux guest (tools/linux_guest.py builds it static, freestanding, into the initramfs).
 *
 * It mounts proc, sysfs and debugfs, says how many CPUs are online, provokes five WARN_ONs through
 * LKDTM (each a `twi 31,0,0` trap word taken by the kernel's own program-check handler, reported and
 * resumed), says what it did and powers the machine off. No libc: raw system calls (`sc`, number in r0,
 * arguments in r3.., CR0[SO] set on error), so it runs on e500v2 (no classic FPU) and e500mc alike.
 */
typedef unsigned long size_t;
typedef long ssize_t;

#define SYS_exit 1
#define SYS_read 3
#define SYS_write 4
#define SYS_open 5
#define SYS_close 6
#define SYS_mkdir 39
#define SYS_sync 36
#define SYS_mount 21
#define SYS_reboot 88

#define O_RDONLY 0
#define O_WRONLY 1

static long sys3(long nr, long a, long b, long c)
{
    register long r0 __asm__("r0") = nr;
    register long r3 __asm__("r3") = a;
    register long r4 __asm__("r4") = b;
    register long r5 __asm__("r5") = c;
    __asm__ volatile("sc\n\tbns+ 1f\n\tneg %1,%1\n1:"
                     : "+r"(r0), "+r"(r3), "+r"(r4), "+r"(r5)
                     :
                     : "r6", "r7", "r8", "r9", "r10", "r11", "r12", "cr0", "ctr", "memory");
    return r3;
}

static long sys5(long nr, long a, long b, long c, long d, long e)
{
    register long r0 __asm__("r0") = nr;
    register long r3 __asm__("r3") = a;
    register long r4 __asm__("r4") = b;
    register long r5 __asm__("r5") = c;
    register long r6 __asm__("r6") = d;
    register long r7 __asm__("r7") = e;
    __asm__ volatile("sc\n\tbns+ 1f\n\tneg %1,%1\n1:"
                     : "+r"(r0), "+r"(r3), "+r"(r4), "+r"(r5), "+r"(r6), "+r"(r7)
                     :
                     : "r8", "r9", "r10", "r11", "r12", "cr0", "ctr", "memory");
    return r3;
}

static size_t len(const char *s) { size_t n = 0; while (s[n]) n++; return n; }
static void put(const char *s) { sys3(SYS_write, 1, (long)s, (long)len(s)); }

static void put_num(long v)
{
    char buf[24];
    int i = sizeof buf - 1;
    int neg = v < 0;
    unsigned long u = neg ? -(unsigned long)v : (unsigned long)v;
    buf[i] = 0;
    do { buf[--i] = '0' + u % 10; u /= 10; } while (u);
    if (neg) buf[--i] = '-';
    put(buf + i);
}

static void mount_fs(const char *dir, const char *type)
{
    sys3(SYS_mkdir, (long)dir, 0755, 0);
    long r = sys5(SYS_mount, (long)type, (long)dir, (long)type, 0, 0);
    put("init: mount "); put(type); put(" on "); put(dir); put(r == 0 ? ": ok\n" : ": failed ");
    if (r) { put_num(r); put("\n"); }
}

/* CPUs in a list like "0-3" or "0,2": counted from /sys/devices/system/cpu/online */
static int cpus_online(void)
{
    char buf[64];
    long fd = sys3(SYS_open, (long)"/sys/devices/system/cpu/online", O_RDONLY, 0);
    if (fd < 0) return -1;
    long n = sys3(SYS_read, fd, (long)buf, sizeof buf - 1);
    sys3(SYS_close, fd, 0, 0);
    if (n <= 0) return -1;
    buf[n] = 0;
    int count = 0, lo = -1, cur = -1;
    for (long i = 0; i <= n; i++) {
        char c = buf[i];
        if (c >= '0' && c <= '9') { cur = (cur < 0 ? 0 : cur * 10) + (c - '0'); continue; }
        if (c == '-') { lo = cur; cur = -1; continue; }
        if (cur >= 0) { count += lo >= 0 ? cur - lo + 1 : 1; }
        lo = -1; cur = -1;
    }
    return count;
}

#define WARNINGS 5

void _start(void)
{
    put("init: kvmppc-cosim Linux guest, PID 1\n");
    mount_fs("/proc", "proc");
    mount_fs("/sys", "sysfs");
    mount_fs("/sys/kernel/debug", "debugfs");
    put("init: "); put_num(cpus_online()); put(" cpu(s) online\n");

    int done = 0;
    for (int i = 0; i < WARNINGS; i++) {
        long fd = sys3(SYS_open, (long)"/sys/kernel/debug/provoke-crash/DIRECT", O_WRONLY, 0);
        if (fd < 0) { put("init: cannot open provoke-crash/DIRECT: "); put_num(fd); put("\n"); break; }
        long r = sys3(SYS_write, fd, (long)"WARNING\n", 8);
        sys3(SYS_close, fd, 0, 0);
        if (r == 8) done++;
    }
    put("init: provoked "); put_num(done); put(" of "); put_num(WARNINGS); put(" WARN_ON traps\n");
    put("init: done, powering off\n");
    sys3(SYS_sync, 0, 0, 0);
    sys5(SYS_reboot, 0xfee1dead, 672274793, 0x4321FEDC, 0, 0);   /* LINUX_REBOOT_CMD_POWER_OFF */
    for (;;) sys3(SYS_exit, 0, 0, 0);
}
