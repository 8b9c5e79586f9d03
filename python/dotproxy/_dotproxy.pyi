"""Type stubs for dotproxy._dotproxy, the C++ part of the dotproxy package."""

from typing import Iterable, Optional, Union

class ParseError(ValueError):
    """A DNS message that does not parse; the text names what is wrong and the byte offset."""

class QueryError(OSError):
    """A query that got no usable reply: refused, reset, closed, TLS verification failed..."""

class Question:
    name: str
    type: int
    cls: int
    def __init__(self, name: str, type: Union[str, int] = "A", cls: Union[str, int] = "IN") -> None: ...
    @property
    def type_text(self) -> str: ...

class Record:
    name: str
    type: int
    cls: int
    ttl: int
    rdata: bytes
    @property
    def text(self) -> str: ...
    @property
    def type_text(self) -> str: ...
    def __init__(self, name: str, type: Union[str, int], cls: Union[str, int] = "IN",
                 ttl: int = 0, rdata: bytes = b"") -> None: ...

class Edns:
    version: int
    udp_size: int
    do: bool
    ext_rcode: int
    options: list[tuple[int, bytes]]
    def __init__(self) -> None: ...

class Message:
    id: int
    flags: int
    qr: bool
    aa: bool
    tc: bool
    rd: bool
    ra: bool
    ad: bool
    cd: bool
    questions: list[Question]
    answer: list[Record]
    authority: list[Record]
    additional: list[Record]
    edns: Optional[Edns]
    @property
    def opcode(self) -> int: ...
    @property
    def rcode(self) -> int: ...
    @property
    def rcode_text(self) -> str: ...
    @property
    def size(self) -> int: ...
    def __init__(self) -> None: ...
    def to_wire(self) -> bytes: ...

class Answer:
    @property
    def message(self) -> Message: ...
    @property
    def wire(self) -> bytes: ...
    @property
    def rcode(self) -> int: ...
    @property
    def connect(self) -> float: ...
    @property
    def handshake(self) -> float: ...
    @property
    def total(self) -> float: ...
    @property
    def transport(self) -> str: ...
    @property
    def tls_version(self) -> str: ...
    @property
    def tls_cipher(self) -> str: ...
    @property
    def tls_resumed(self) -> bool: ...

def build_query(name: str, type: Union[str, int] = "A", cls: Union[str, int] = "IN",
                rd: bool = True, do: bool = False, cd: bool = False, edns: bool = True,
                bufsize: int = 1232, options: list[tuple[int, bytes]] = [],
                id: Optional[int] = None) -> bytes: ...

def parse(wire: bytes) -> Message: ...

def query(server: str, name: str, type: Union[str, int] = "A", transport: str = "udp",
          port: Optional[int] = None, tls_name: Optional[str] = None, ca: Optional[str] = None,
          pin: Union[None, str, list[str]] = None, timeout: float = 2.0,
          cls: Union[str, int] = "IN", rd: bool = True, do: bool = False, cd: bool = False,
          insecure: bool = False) -> Answer: ...

class Connection:
    def __init__(self, server: str, transport: str = "tcp", port: Optional[int] = None,
                 tls_name: Optional[str] = None, ca: Optional[str] = None,
                 pin: Union[None, str, list[str]] = None, insecure: bool = False,
                 timeout: float = 2.0) -> None: ...
    def send(self, queries: Union[bytes, Iterable[bytes]]) -> list[int]: ...
    def receive(self, id: Optional[int] = None, timeout: Optional[float] = None) -> Answer: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def tls_version(self) -> str: ...
    @property
    def tls_cipher(self) -> str: ...
    @property
    def tls_resumed(self) -> bool: ...
    def __enter__(self) -> "Connection": ...
    def __exit__(self, *exc: object) -> None: ...
