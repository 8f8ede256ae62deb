/* startup_mps2.c - vector table and reset handler of the Cortex-M
 * bootloader (mps2.ld places them; QEMU's mps2 boards start at 0).
 *
 * Reset: copy .data from its load address, zero .bss, paint the stack
 * (so boot_main can report how deep it went), call nb_mps2_main(). Any
 * fault prints one line through semihosting and ends the run as failed.
 */
#include <stdint.h>

#include "semihost.h"
#include "startup_mps2.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;

void Reset_Handler(void) __attribute__((noreturn));
void Fault_Handler(void) __attribute__((noreturn));

__attribute__((section(".vectors"), used))
const void *const nb_vectors[16] = {
    &_estack,      /* initial stack pointer */
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMonitor */
    0,
    Fault_Handler, /* PendSV */
    Fault_Handler, /* SysTick */
};

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata, *sp;
    while (dst < &_edata)
        *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; dst++)
        *dst = 0;
    /* Paint the stack below this frame (with a margin). */
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (dst = &_sstack; dst < sp - 16; dst++)
        *dst = NB_STACK_PAINT;
    sh_exit(nb_mps2_main() == 0);
}

void Fault_Handler(void)
{
    sh_write0("nobrick: fault (hard fault or unexpected exception)\n");
    sh_exit(0);
}

uint32_t nb_stack_used(void)
{
    const uint32_t *p = &_sstack;
    while (p < &_estack && *p == NB_STACK_PAINT)
        p++;
    return (uint32_t)((uintptr_t)&_estack - (uintptr_t)p);
}

uint32_t nb_stack_size(void)
{
    return (uint32_t)((uintptr_t)&_estack - (uintptr_t)&_sstack);
}
