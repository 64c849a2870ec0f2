/* Trains the exported Forward-Forward model on this board over the USB serial port:
 *
 *   edgeff board train --model MODEL_INT8 --port /dev/ttyACM0 --samples 2000 --out trained.safetensors
 *
 * The host streams the samples, the board trains on each with EdgeFF's integer rule, and the host reads the
 * trained model back (bit-identical to EdgeFF's runtime). See README.md for USB CDC pitfalls. */
#include <EdgeFF.h>

EdgeFFBoard edgeff;

void setup()
{
    Serial.begin(115200);      /* USB CDC ignores the baud rate; a hardware UART uses it */
    while (!Serial) {          /* USB CDC: wait until the host opens the port, or the first replies are lost */
    }
    edgeff.begin(Serial);
}

void loop()
{
    edgeff.poll();
}
