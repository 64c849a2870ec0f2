/* The UART code every board shares: bytes from the driver's receive interrupt into a ring buffer, reads
 * that sleep in WFI until a byte is there, and the printing the self-tests use. */
#include "uart.h"
#include "uart_driver.h"

#define RX_SIZE 1024u   /* a power of two */
static volatile uint8_t rx_ring[RX_SIZE];
static volatile uint32_t rx_head, rx_tail;

void uart_received(uint8_t b)
{
    if (rx_head - rx_tail < RX_SIZE)   /* a full ring drops bytes: the protocol resends */
        rx_ring[rx_head++ & (RX_SIZE - 1)] = b;
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
    for (uint32_t i = 0; i < n; ++i)
        uart_send_byte(data[i]);
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
