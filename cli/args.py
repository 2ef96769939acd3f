"""What every command's arguments share: argument types that explain a bad value, the help format, the
subcommand groups, and the error a command raises for a wrong argument."""

import argparse
import urllib.parse


class UsageError(Exception):
    """A wrong argument found after parsing: exit 2 with its message, as argparse's own errors."""


def at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def tcp_port(text: str) -> int:
    port = at_least(0)(text)  # 0: any free port (logged)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0-65535, got {port}")
    return port


def http_url(text: str) -> str:
    parsed = urllib.parse.urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise argparse.ArgumentTypeError(f"expected http://host:port (or https://), got {text!r}")
    return text


def share(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share of users from 0 to 1")
    return share


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default after its help, where it has one."""

    def _get_help_string(self, action):
        return super()._get_help_string(action) if action.default not in (None, False) else action.help


def commands(parser: argparse.ArgumentParser, dest: str = "command"):
    """Subcommands, named COMMAND in usage and errors ("argument COMMAND: invalid choice: ...")."""
    return parser.add_subparsers(
        dest=dest,
        metavar="COMMAND",
        required=True,
        parser_class=lambda **kw: argparse.ArgumentParser(formatter_class=HelpFormatter, **kw),
    )
