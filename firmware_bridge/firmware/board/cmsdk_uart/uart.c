/* The Arm CMSDK APB UART (both MPS2 boards, mps2-an386 and mps2-an500, at the descriptor's uart_base):
 * receive by interrupt (the descriptor's uart_rx_irq), polled transmit. */
#include "board_config.h"
#include "uart.h"
#include "uart_driver.h"

#define UART_DATA (*(volatile uint32_t *)(EF_BOARD_UART_BASE + 0x00))
#define UART_STATE (*(volatile uint32_t *)(EF_BOARD_UART_BASE + 0x04))
#define UART_CTRL (*(volatile uint32_t *)(EF_BOARD_UART_BASE + 0x08))
#define UART_INTCLEAR (*(volatile uint32_t *)(EF_BOARD_UART_BASE + 0x0C))
#define UART_BAUDDIV (*(volatile uint32_t *)(EF_BOARD_UART_BASE + 0x10))
#define STATE_TX_FULL 1u
#define STATE_RX_FULL 2u
#define CTRL_TX_EN 1u
#define CTRL_RX_EN 2u
#define CTRL_RX_INT_EN 8u
#define INT_RX 2u

void uart_init(void)
{
    UART_BAUDDIV = 16;   /* the smallest divider the CMSDK UART accepts */
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN;
    nvic_enable(EF_BOARD_UART_RX_IRQ);
    systick_start();
}

/* Clear first, then drain: a byte that arrives after the drain raises the interrupt again (clearing
 * after the drain could swallow it and leave the core asleep with a byte waiting). */
void uart_rx_handler(void)
{
    UART_INTCLEAR = INT_RX;
    while (UART_STATE & STATE_RX_FULL)
        uart_received((uint8_t)UART_DATA);
}

void uart_send_byte(uint8_t b)
{
    while (UART_STATE & STATE_TX_FULL)
        ;
    UART_DATA = b;
}
