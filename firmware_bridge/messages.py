"""Message types, error codes and payload layouts of the board protocol (PROTOCOL.md, "Messages").

Shared by the host driver and the virtual board; the C firmware's copy (edgeff/csrc/protocol/wire_generated.h)
is generated from this module by firmware_bridge/c_constants.py. All integers are
little-endian. Every request is idempotent (PROTOCOL.md, "Exactly once"), so a host may resend any
request whose answer it did not get.
"""
from enum import IntEnum

from edgeff.byte_layout import ByteLayout

PROTOCOL_VERSION = 3             # the versions this side speaks: [MIN_VERSION, PROTOCOL_VERSION]
MIN_VERSION = 3                  # 3: STAGE names its sample and lands in one of STAGING_SLOTS (selective resend)
STAGING_SLOTS = 4                # records a v3 board stages at once: samples applied .. applied + 3 (PROTOCOL.md)
EMPTY_SLOT = 0xFFFFFFFF          # a staging slot's tag while it holds no sample
MODEL_FORMAT = 1                 # board image format of an FF MLP (board_image.py)
LAYERED_MODEL_FORMAT = 2         # board image format of a layered CwC model (board_image.py)
MAX_LAYERS = 8                   # layers a board image holds and a board's model runs (EF_MAX_LAYERS)
NO_NEGATIVE = 0xFF               # in a sample record: "the board draws the negative label itself"
NAK_SEQ = 0xFFFF                 # a NAK's sequence number: the frame it answers could not be read
TEXT_FIELD = 16                  # INFO's name and firmware texts: UTF-8, NUL-padded


class Request(IntEnum):
    HELLO = 0x01
    LOAD_BEGIN = 0x02
    LOAD_CHUNK = 0x03
    LOAD_END = 0x04
    CONFIGURE = 0x05
    STAGE = 0x06
    TRAIN = 0x07
    INFER = 0x08
    METRICS = 0x09
    READ = 0x0A
    CHECKPOINT = 0x0B
    RESTORE = 0x0C
    RESET = 0x0D


class Reply(IntEnum):
    OK = 0x80
    INFO = 0x81
    TRAINED = 0x82
    SCORES = 0x83
    METRICS = 0x84
    DATA = 0x85
    STAGED = 0x86
    ERROR = 0xE0
    NAK = 0xE1


class ErrorCode(IntEnum):
    UNKNOWN_TYPE = 1     # detail: the type byte
    BAD_LENGTH = 2       # detail: the payload length received
    BAD_STATE = 3        # e.g. TRAIN before a model is loaded and configured
    VERSION = 4          # detail: board's (min << 8) | max
    NO_MEMORY = 5        # detail: bytes the model needs
    BAD_MODEL = 6        # image CRC, size or content refused
    SEQUENCE = 7         # detail: samples applied so far (the index the board expects next); also STAGE of
                     # a sample STAGING_SLOTS or more ahead of it
    BAD_SAMPLE = 8       # staged record incomplete or its CRC differs; detail: bytes of it the slot holds
    BAD_RANGE = 9        # offset or length outside the buffer
    STORAGE = 10         # checkpoint could not be written or read


NAK_REASONS = {"cobs": 1, "crc": 2, "short": 3, "too_long": 4}

# payload layouts (after the frame header): each field named, so the C copy gets its offset (c_constants.py)
HELLO = ByteLayout("<BB", ("min_version", "max_version"))          # the versions the host speaks
INFO = ByteLayout(f"<BBBHIIIBBIIIII{TEXT_FIELD}s{TEXT_FIELD}s",     # see PROTOCOL.md
                  ("version", "min_version", "max_version", "max_payload", "sram_budget", "flash_budget",
                   "sram_free", "model_format", "flags", "run_id", "applied", "checkpoint_applied", "image_bytes",
                   "image_crc", "name", "firmware"))
LOAD_BEGIN = ByteLayout("<II", ("total", "crc"))                  # total bytes, crc32 of the image
OFFSET = ByteLayout("<I", ("offset",))                            # LOAD_CHUNK: offset, then bytes
STAGE = ByteLayout("<II", ("index", "offset"))                    # sample index, offset, then bytes of its record
CONFIGURE = ByteLayout("<IBBBBBxxxIiii",                          # theta in Q.12
                       ("run_id", "lr_shift", "gamma_shift", "loss", "negatives", "rounding", "seed",
                        "sigmoid_multiplier", "sigmoid_shift", "theta_q"))
TRAIN = ByteLayout("<II", ("index", "crc"))                       # sample index, crc32 of the staged record
INFER = ByteLayout("<II", ("index", "crc"))                       # index the record was staged as, its crc32
READ = ByteLayout("<IH", ("offset", "length"))
OK = ByteLayout("<I", ("value",))                                 # a value (see each request)
TRAINED = ByteLayout("<IBB", ("applied", "correct", "duplicate"))  # goodness correct and duplicate are 0/1
SCORES = ByteLayout("<BB", ("multi_pass", "one_pass"))            # the two predictions, then int32 scores
METRICS = ByteLayout("<IIIIQIII", ("applied", "correct", "recent_correct", "recent_n", "compute_us", "frames_ok",
                                   "frames_bad", "errors_sent"))
DATA = ByteLayout("<II", ("offset", "total"))                     # offset, total bytes, then bytes
STAGED = ByteLayout("<III", ("applied", "held", "missing"))       # samples applied, bytes of the sample's record
                                                                  # held, the first offset not held (the record's
                                                                  # size when whole)
ERROR = ByteLayout("<BI", ("code", "detail"))                     # code, detail, then a UTF-8 message
NAK = ByteLayout("<B", ("reason",))

# every reply's fixed fields, and whether bytes may follow them: the host checks each reply against this
REPLY_LAYOUTS = {Reply.OK: (OK, False), Reply.INFO: (INFO, False), Reply.TRAINED: (TRAINED, False),
                 Reply.SCORES: (SCORES, True), Reply.METRICS: (METRICS, False), Reply.DATA: (DATA, True),
                 Reply.STAGED: (STAGED, False), Reply.ERROR: (ERROR, True), Reply.NAK: (NAK, False)}

LOSSES = ("symba", "softplus")
NEGATIVES = ("random", "hard")
ROUNDINGS = ("stochastic", "nearest")

FIXED_REQUEST_SIZES = {Request.HELLO: HELLO.size, Request.LOAD_BEGIN: LOAD_BEGIN.size, Request.LOAD_END: 0,
                       Request.CONFIGURE: CONFIGURE.size, Request.TRAIN: TRAIN.size, Request.INFER: INFER.size,
                       Request.METRICS: 0, Request.READ: READ.size, Request.CHECKPOINT: 0, Request.RESTORE: 0,
                       Request.RESET: 0}
CHUNKED_REQUESTS = {Request.LOAD_CHUNK: OFFSET, Request.STAGE: STAGE}   # this header, then at least one byte


MODEL_FORMAT_NAMES = {MODEL_FORMAT: "FF MLP", LAYERED_MODEL_FORMAT: "layered CwC"}


def format_bit(fmt: int) -> int:
    """A model format's bit in INFO's model formats mask (bit f - 1 for format f)."""
    return 1 << (fmt - 1)


def formats_in(mask: int) -> list:
    """The model formats an INFO mask names, ascending."""
    return [f + 1 for f in range(8) if mask >> f & 1]


def error_payload(code: ErrorCode, detail: int, message: str, max_payload: int) -> bytes:
    text = message.encode("utf-8")[:max(0, max_payload - ERROR.size)]
    return ERROR.pack(code, detail & 0xFFFFFFFF) + text


def text_field(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
