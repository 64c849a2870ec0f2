/* CMSDK APB UART0 of the mps2-an386 (0x40004000): interrupt-driven receive into a ring buffer, polled
 * transmit, and SysTick as a free-running tick counter. */
#ifndef EDGEFF_UART_H
#define EDGEFF_UART_H

#include <stdint.h>

void uart_init(void);
void uart_write(const uint8_t *data, uint32_t n);
void uart_puts(const char *s);
void uart_put_hex32(uint32_t v);
void uart_put_u32(uint32_t v);
/* the next received byte; sleeps (WFI) until one arrives */
uint8_t uart_read_byte(void);
uint32_t systick_ticks(void);   /* SysTick wraps (24 bits) since uart_init, at the core clock */
void board_exit(void);          /* startup.c: ends the emulation (semihosting) */
void board_reboot(void);        /* startup.c: a system reset */

#endif
