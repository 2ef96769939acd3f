"""A DNS server on 127.0.0.1 (UDP, dnspython's wire format) for the tests: it answers a name's A query with a
list of addresses, as a headless Service's name resolves to the addresses of its ready pods.

    dns = DnsServer("tf-serving.test", ["127.0.0.1", "127.0.0.2"]).start()
    f"dns://127.0.0.1:{dns.port}/tf-serving.test:8500"     # a gRPC target resolved through it
"""

import socket
import threading

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset


class DnsServer:
    def __init__(self, name: str, addresses: list[str]):
        self.name, self.addresses = dns.name.from_text(name), list(addresses)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)  # so the thread sees stop() soon
        self.port = self._socket.getsockname()[1]
        self._stopped = threading.Event()

    def start(self) -> "DnsServer":
        threading.Thread(target=self._serve, name="fake-dns", daemon=True).start()
        return self

    def _serve(self):
        while not self._stopped.is_set():
            try:
                query, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            request = dns.message.from_wire(query)
            response = dns.message.make_response(request)
            [question] = request.question
            if question.name != self.name:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A:  # other types (AAAA): the name exists, no such records
                response.answer.append(dns.rrset.from_text(question.name, 1, "IN", "A", *self.addresses))
            self._socket.sendto(response.to_wire(), peer)
        self._socket.close()

    def stop(self):
        self._stopped.set()
