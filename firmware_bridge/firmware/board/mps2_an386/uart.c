#include "board_config.h"
#include "uart.h"

#define UART0_BASE EF_BOARD_UART_BASE
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x00))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x04))
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x08))
#define UART_INTCLEAR (*(volatile uint32_t *)(UART0_BASE + 0x0C))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x10))
#define STATE_TX_FULL 1u
#define STATE_RX_FULL 2u
#define CTRL_TX_EN 1u
#define CTRL_RX_EN 2u
#define CTRL_RX_INT_EN 8u
#define INT_RX 2u

#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

#define RX_SIZE 1024u   /* a power of two */
static volatile uint8_t rx_ring[RX_SIZE];
static volatile uint32_t rx_head, rx_tail, wraps;

void uart_init(void)
{
    UART_BAUDDIV = 16;   /* the smallest divider the CMSDK UART accepts */
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN;
    NVIC_ISER0 = 1u << EF_BOARD_UART_RX_IRQ;
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7u;   /* core clock, interrupt on wrap, enabled */
}

/* Clear first, then drain: a byte that arrives after the drain raises the interrupt again (clearing
 * after the drain could swallow it and leave the core asleep with a byte waiting). */
void uart0_rx_handler(void)
{
    UART_INTCLEAR = INT_RX;
    while (UART_STATE & STATE_RX_FULL) {
        uint8_t b = (uint8_t)UART_DATA;
        if (rx_head - rx_tail < RX_SIZE)   /* a full ring drops bytes: the protocol resends */
            rx_ring[rx_head++ & (RX_SIZE - 1)] = b;
    }
}

void systick_handler(void) { ++wraps; }

uint32_t systick_ticks(void)
{
    uint32_t w, v;
    do {
        w = wraps;
        v = SYST_CVR;
    } while (w != wraps);
    return (w << 24) + (0x00FFFFFFu - v);
}

/* Sleeps with interrupts masked between the check and WFI: an interrupt that comes in between still ends
 * the WFI (it is pending), so no byte can arrive unnoticed while the core goes to sleep. */
uint8_t uart_read_byte(void)
{
    for (;;) {
        __asm__ volatile("cpsid i" ::: "memory");
        if (rx_head != rx_tail)
            break;
        __asm__ volatile("wfi");
        __asm__ volatile("cpsie i" ::: "memory");
    }
    __asm__ volatile("cpsie i" ::: "memory");
    return rx_ring[rx_tail++ & (RX_SIZE - 1)];
}

void uart_write(const uint8_t *data, uint32_t n)
{
    for (uint32_t i = 0; i < n; ++i) {
        while (UART_STATE & STATE_TX_FULL)
            ;
        UART_DATA = data[i];
    }
}

void uart_puts(const char *s)
{
    while (*s)
        uart_write((const uint8_t *)s++, 1);
}

void uart_put_hex32(uint32_t v)
{
    char buf[8];
    for (int i = 7; i >= 0; --i, v >>= 4)
        buf[i] = "0123456789abcdef"[v & 15u];
    uart_write((const uint8_t *)buf, 8);
}

void uart_put_u32(uint32_t v)
{
    char buf[10];
    int i = 10;
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    uart_write((const uint8_t *)buf + i, (uint32_t)(10 - i));
}
