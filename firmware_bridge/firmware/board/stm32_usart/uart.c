/* An STM32F4 USART (RM0090 section 30; the netduinoplus2's USART1 at the descriptor's uart_base): its real
 * registers SR, DR, BRR and CR1, receive by the RXNE interrupt (the descriptor's uart_rx_irq), polled
 * transmit on TXE. The clock and pin set-up a real chip also needs (RCC enables, PA9/PA10 as AF7) is
 * written too; QEMU leaves RCC and GPIO unimplemented and ignores those writes. */
#include "board_config.h"
#include "uart.h"
#include "uart_driver.h"

#define USART_SR (*(volatile uint32_t *)(EF_BOARD_UART_BASE + 0x00))
#define USART_DR (*(volatile uint32_t *)(EF_BOARD_UART_BASE + 0x04))
#define USART_BRR (*(volatile uint32_t *)(EF_BOARD_UART_BASE + 0x08))
#define USART_CR1 (*(volatile uint32_t *)(EF_BOARD_UART_BASE + 0x0C))
#define SR_RXNE (1u << 5)
#define SR_TXE (1u << 7)
#define CR1_RE (1u << 2)
#define CR1_TE (1u << 3)
#define CR1_RXNEIE (1u << 5)
#define CR1_UE (1u << 13)

#define RCC_AHB1ENR (*(volatile uint32_t *)0x40023830u)
#define RCC_APB2ENR (*(volatile uint32_t *)0x40023844u)
#define GPIOA_MODER (*(volatile uint32_t *)0x40020000u)
#define GPIOA_AFRH (*(volatile uint32_t *)0x40020024u)

#define BAUD 115200u
#define APB2_HZ (EF_BOARD_CLOCK_HZ / 2u)   /* USART1 is on APB2, at half the core clock at 168 MHz */

void uart_init(void)
{
    RCC_AHB1ENR |= 1u << 0;                                   /* GPIOA */
    RCC_APB2ENR |= 1u << 4;                                   /* USART1 */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 18)) | (0xAu << 18);   /* PA9, PA10: alternate function */
    GPIOA_AFRH = (GPIOA_AFRH & ~0xFF0u) | 0x770u;             /* AF7: USART1 TX, RX */
    USART_BRR = (APB2_HZ + BAUD / 2u) / BAUD;                 /* 16x oversampling: the divider in 1/16ths */
    USART_CR1 = CR1_UE | CR1_TE | CR1_RE | CR1_RXNEIE;
    nvic_enable(EF_BOARD_UART_RX_IRQ);
    systick_start();
}

/* RXNE is cleared by reading DR; the interrupt stays raised while a byte waits. */
void uart_rx_handler(void)
{
    while (USART_SR & SR_RXNE)
        uart_received((uint8_t)USART_DR);
}

void uart_send_byte(uint8_t b)
{
    while (!(USART_SR & SR_TXE))
        ;
    USART_DR = b;
}
