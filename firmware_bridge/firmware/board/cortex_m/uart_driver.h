/* Between the shared UART code (uart_common.c: the receive ring, sleeping reads, printing) and a board's
 * UART driver (cmsdk_uart/uart.c, stm32_usart/uart.c), which knows the registers. */
#ifndef EDGEFF_UART_DRIVER_H
#define EDGEFF_UART_DRIVER_H

#include <stdint.h>

void uart_received(uint8_t b);   /* the driver's receive interrupt, for each byte it reads */
void uart_send_byte(uint8_t b);  /* the driver: waits for room in the transmitter, then sends b */

/* the NVIC's set-enable registers (ISER0..): one bit an interrupt, 32 a register */
static inline void nvic_enable(uint32_t irq)
{
    ((volatile uint32_t *)0xE000E100u)[irq / 32u] = 1u << (irq % 32u);
}

#endif
