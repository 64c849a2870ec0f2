/* The stand-in core on a bare Cortex-M4F: enough to link the library and sketch into an image whose
 * sections are the RAM and flash they need (the UART itself is the board core's, not measured here). */
#include <Arduino.h>

StandInSerial Serial;

void StandInSerial::begin(unsigned long) {}
StandInSerial::operator bool() { return true; }
int StandInSerial::available() { return 0; }
int StandInSerial::read() { return -1; }
size_t StandInSerial::write(const uint8_t *, size_t size) { return size; }

unsigned long micros(void) { return 0; }

extern "C" void __cxa_pure_virtual(void) { for (;;) {} }

extern "C" {
extern uint32_t __data_start, __data_end, __data_load, __bss_start, __bss_end, __stack_top;
extern void (*__init_array_start[])(void), (*__init_array_end[])(void);
}

extern "C" void reset_handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end)
        *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;)
        *dst++ = 0;
    for (void (**init)(void) = __init_array_start; init < __init_array_end; ++init)
        (*init)();
    setup();
    for (;;)
        loop();
}

/* the initial stack pointer and the reset vector: all a Cortex-M needs to start */
__attribute__((section(".vectors"), used)) static const void *const vectors[2] = {&__stack_top,
                                                                                  (const void *)reset_handler};
