/* The stand-in core on the host: Serial is this process's stdin and stdout (the test connects them to a
 * pty, which the host driver opens as a serial port), micros() the monotonic clock. The sketch's loop runs
 * until the other end closes the line. */
#include <Arduino.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

StandInSerial Serial;

static uint8_t pending[4096];
static ssize_t pending_n, pending_at;

void StandInSerial::begin(unsigned long) {}
StandInSerial::operator bool() { return true; }

/* what arrived, waiting up to a millisecond when nothing has (so an idle loop() does not spin a core) */
int StandInSerial::available()
{
    if (pending_at < pending_n)
        return (int)(pending_n - pending_at);
    struct pollfd in = {0, POLLIN, 0};
    if (poll(&in, 1, 1) <= 0)
        return 0;
    pending_n = ::read(0, pending, sizeof pending);
    pending_at = 0;
    if (pending_n <= 0)
        exit(0);          /* the line is closed: nobody left to answer */
    return (int)pending_n;
}

int StandInSerial::read() { return available() > 0 ? pending[pending_at++] : -1; }

size_t StandInSerial::write(const uint8_t *buffer, size_t size)
{
    ssize_t n = ::write(1, buffer, size);
    return n > 0 ? (size_t)n : 0;
}

unsigned long micros(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (unsigned long)(t.tv_sec * 1000000ull + (unsigned long long)t.tv_nsec / 1000u);
}

int main(void)
{
    setup();
    for (;;)
        loop();
}
