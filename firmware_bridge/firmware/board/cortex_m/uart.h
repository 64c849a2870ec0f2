/* What every board support gives the applications: its UART (the descriptor's uart_base; one driver per
 * UART kind: cmsdk_uart/, stm32_usart/) with interrupt-driven receive into a ring buffer and polled transmit,
 * SysTick as a free-running tick counter (systick.c), the end of the emulation and a reset (startup.c). */
#ifndef EDGEFF_UART_H
#define EDGEFF_UART_H

#include <stdint.h>

void uart_init(void);        /* the UART, and SysTick (systick_start) */
void systick_start(void);
void uart_write(const uint8_t *data, uint32_t n);
void uart_puts(const char *s);
void uart_put_hex32(uint32_t v);
void uart_put_u32(uint32_t v);
/* the next received byte; sleeps (WFI) until one arrives */
uint8_t uart_read_byte(void);
uint32_t systick_ticks(void);   /* SysTick wraps (24 bits) since uart_init, at the core clock */
/* prints EDGEFF-CALIBRATION instructions=I ticks=T: a loop of I instructions took T ticks (the host's
 * conversion of ticks to instructions, firmware_bridge/instruction_counts.py) */
void systick_calibrate(void);
void board_exit(void);          /* startup.c: ends the emulation (semihosting) */
void board_reboot(void);        /* startup.c: a system reset */

#endif
