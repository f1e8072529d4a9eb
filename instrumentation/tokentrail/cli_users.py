"""`tokentrail users`: the accounts that may sign in to the web UI and the projects each reads.

It opens the database itself (like `tokentrail analyze`): with the embedded database, stop the
server first; against a ClickHouse server it works while the UI runs, and a change counts from
the UI's next request. A password is asked for on the terminal without echo (twice), or read as
one line from standard input with `--password-stdin`; it is never taken as an argument, which
would land in the shell's history and the process list.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

__all__ = ["add_parser", "run"]

_MIN_PASSWORD = 8
_MAX_PASSWORD = 1024


def add_parser(sub: Any) -> None:
    users = sub.add_parser("users", help="accounts of the web UI and their projects")
    verbs = users.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="create an account (asks for its password) or add it to projects")
    add.add_argument("email")
    add.add_argument("--project", action="append", required=True, help="a project it reads (repeatable)")
    how = add.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    how.add_argument(
        "--no-password",
        action="store_true",
        help="no password: the account signs in through the single sign-on proxy's header only",
    )
    remove = verbs.add_parser("remove", help="take an account out of a project, or remove it altogether")
    remove.add_argument("email")
    remove.add_argument("--project", help="only from this project (default: the whole account)")
    passwd = verbs.add_parser("passwd", help="set an account's password (ends its sessions)")
    passwd.add_argument("email")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    verbs.add_parser("list", help="the accounts, their projects and whether they have a password")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        raise SystemExit("tokentrail: no terminal to ask for the password on: pass it with --password-stdin")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise SystemExit("tokentrail: the passwords differ; nothing changed")
    if not _MIN_PASSWORD <= len(password) <= _MAX_PASSWORD:
        raise SystemExit(
            f"tokentrail: a password has {_MIN_PASSWORD} to {_MAX_PASSWORD} characters; nothing changed"
        )
    return password


def run(args: argparse.Namespace, open_store: Any) -> int:
    """Carry out `tokentrail users VERB`; `open_store()` gives the migrated store."""
    from tokentrail.store import users

    try:
        email = users.normalize_email(args.email) if args.verb != "list" else ""
        for project in getattr(args, "project", None) or ():
            if not users.PROJECT.match(project):
                raise ValueError(f"project {project!r} must be 1 to 64 letters, digits, - or _")
    except ValueError as exc:
        raise SystemExit(f"tokentrail: {exc}") from None
    store = open_store()
    try:
        return _VERBS[args.verb](store.client, args, email)
    finally:
        store.close()


def _add(client: Any, args: argparse.Namespace, email: str) -> int:
    from tokentrail.store import users

    user = users.get_user(client, email)
    if user is not None and not user.disabled:
        if args.password_stdin or args.no_password:
            raise SystemExit(f"tokentrail: {email} exists; set its password with `tokentrail users passwd`")
    else:
        hashed = "" if args.no_password else users.hash_password(_password(args.password_stdin))
        users.save_user(client, email, hashed)
    for project in args.project:
        users.add_membership(client, email, project)
    print(f"{email} reads {', '.join(sorted(set(args.project) | set(user.projects if user else ())))}")
    return 0


def _existing(client: Any, email: str) -> Any:
    """The account, or an exit saying there is none."""
    from tokentrail.store import users

    user = users.get_user(client, email)
    if user is None or user.disabled:
        raise SystemExit(f"tokentrail: no account {email}")
    return user


def _remove(client: Any, args: argparse.Namespace, email: str) -> int:
    from tokentrail.store import users

    user = _existing(client, email)
    if args.project:
        if args.project not in user.projects:
            raise SystemExit(f"tokentrail: {email} is not in project {args.project}")
        users.remove_membership(client, email, args.project)
        print(f"{email} no longer reads {args.project}")
    else:
        users.remove_user(client, email)
        print(f"{email} removed; its sessions are ended")
    return 0


def _passwd(client: Any, args: argparse.Namespace, email: str) -> int:
    from tokentrail.store import users

    _existing(client, email)
    users.save_user(client, email, users.hash_password(_password(args.password_stdin)))
    users.revoke_sessions(client, email)
    print(f"password of {email} set; its sessions are ended")
    return 0


def _list(client: Any, args: argparse.Namespace, email: str) -> int:
    from tokentrail.store import users

    print("email\tprojects\tsign-in")
    for user in users.list_users(client):
        if user.disabled:
            continue
        how = "password" if user.has_password else "single sign-on only"
        print(f"{user.email}\t{','.join(user.projects) or '-'}\t{how}")
    return 0


_VERBS = {"add": _add, "remove": _remove, "passwd": _passwd, "list": _list}
