/* The C library entry of a cnnedge firmware (Cortex_DFP's start-up calls _start after copying
 * .data; its linker script leaves zeroing .bss to the C run-time, so this file does it). It
 * replaces newlib's semihosting crt0, which asks the emulator where
 * the heap and stack are and moves the stack there (wrong on boards whose RAM the emulator does
 * not describe, and it breaks ARMv8-M's stack limit): here the stack stays where the linker
 * script put it. Before main() it paints the free stack with a pattern; after main() returns it
 * prints how much of the stack and heap the program touched, then exits through semihosting. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
extern void *_sbrk(int incr);
extern uint32_t __StackLimit, __StackTop, end, __bss_start__, __bss_end__;

#define PAINT 0xC5C5C5C5u

/* What crti.o and crtbegin.o would provide (they belong to the crt0 this file replaces). */
void _init(void) {}
void _fini(void) {}
void *__dso_handle = &__dso_handle;

void _start(void) {
  for (uint32_t *p = &__bss_start__; p < &__bss_end__; ++p) *p = 0;
  uint32_t *sp;
  __asm volatile("mov %0, sp" : "=r"(sp));
  /* Paint from the stack's lowest word up to a margin below this frame. */
  for (uint32_t *p = &__StackLimit; p < sp - 64; ++p) *p = PAINT;
  initialise_monitor_handles();
  __libc_init_array();
  int rc = main();
  uint32_t *p = &__StackLimit;
  while (p < sp && *p == PAINT) ++p;
  unsigned used = (unsigned)((uintptr_t)&__StackTop - (uintptr_t)p);
  unsigned size = (unsigned)((uintptr_t)&__StackTop - (uintptr_t)&__StackLimit);
  unsigned heap = (unsigned)((uintptr_t)_sbrk(0) - (uintptr_t)&end);
  printf("stack: %u of %u bytes used\nheap: %u bytes used\n", used, size, heap);
  exit(rc);
}
