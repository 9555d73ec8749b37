"""Password rules for staff accounts (argon2id hashing stays in ``accounts.py``).

A password is refused when it is

* shorter than :data:`MIN_PASSWORD_CHARS` (12) characters;
* made of fewer than :data:`MIN_DISTINCT_CHARS` different characters (``aaaaaaaaaaaa``);
* one short piece repeated (``abcabcabcabc``, ``pass1234pass1234``);
* a run along the keyboard or the alphabet (``qwertyuiop[]``, ``123456789012``);
* in the list of common passwords shipped with the project
  (``data/common-passwords.txt``), compared without case, spaces or look-alike digits
  (``P@ssw0rd`` is ``password``), whole or with digits and signs stripped from both
  ends (``Password2024!`` is ``password``);
* containing the user name (without case; names of 3 characters or more).

The list is made by :func:`generate_common_passwords` from well-known patterns: the most
used passwords and words of published breach statistics (English and pinyin), keyboard
walks, number runs, each with the usual years and number suffixes. It is regenerated with
``python -m zhichao.service.passwords`` and a test checks the shipped file matches. A
deployment may add its own lines to the file.

Every refusal is an :class:`~zhichao.service.errors.InvalidInputError` with a zh-CN
message naming the rule.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from zhichao.service.errors import InvalidInputError

MIN_PASSWORD_CHARS = 12
MIN_DISTINCT_CHARS = 6  # guess: rules out "aaaaaaaaaaaa" and "abababababab"
COMMON_PASSWORDS_FILE = Path(__file__).parent / "data" / "common-passwords.txt"

_LOOKALIKE = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                            "@": "a", "$": "s", "!": "i", "|": "l", "+": "t"})
_DECORATION = "0123456789!@#$%^&*()_+-=[]{};:'\",.<>/?\\|`~"
_WALKS = ("1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", "zxcvbnm,./",
          "abcdefghijklmnopqrstuvwxyz", "0123456789", "!@#$%^&*()_+",
          "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/", "qazwsxedcrfvtgbyhnujmikolp")

# Words and passwords at the top of published breach statistics (English, pinyin and
# number codes common in China), the service's own words, and common names.
_BASE_WORDS = """
password passw0rd passwd pass word secret letmein welcome welcome1 login admin
administrator root user guest default changeme master superman batman iloveyou
iloveu loveyou lovely love trustno1 monkey dragon football baseball basketball soccer
hockey sunshine princess shadow michael jennifer jordan hunter ranger buster tigger
charlie thomas harley robert daniel andrew joshua matthew ashley jessica amanda nicole
summer winter spring autumn flower freedom whatever starwars pokemon computer internet
cheese chocolate cookie pepper ginger orange banana apple samsung google facebook
microsoft android iphone qwerty qwertyui asdfgh zxcvbn abc abcd abcdef abcdefg
abc123 a1b2c3 aaa111 test tester testing hello hello123 helloworld
killer pussy fuckyou fuckme mustang access ninja azerty solo
woaini woaini1314 woaini520 aini aiwo wodemima mima mimamima nihao nihaoma
zhongguo china beijing shanghai guangzhou shenzhen hangzhou tianjin chongqing
zhang wang li liu chen yang huang zhao wu zhou xu sun ma zhu hu guo he lin gao luo
zheng liang xie song tang han feng deng cao peng xiao
baidu taobao tencent weixin wechat qq qqqq alipay zhifubao huawei xiaomi
zhichao chaozhi zhifa jiaotong gonglu gaosu chezhu shenhe falv jueding
woshishui wocao caonima shabi laopo laogong baobei xiaobao tiantian
fuwuqi shujuku guanliyuan yonghu denglu kouling
"""
_NUMBER_CODES = ("5201314", "1314520", "520", "1314", "521", "888", "8888", "666", "6666",
                 "168", "518", "999", "000", "111", "123", "1234", "12345", "123456",
                 "123123", "654321", "112233", "147258", "147258369", "159357", "789",
                 "007", "110", "911", "2580", "12306")
_SUFFIXES = ("", "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678",
             "123456789", "!", "!!", "@", "#", "1!", "123!", "@123", "#123", ".", "..")


def _years() -> list[str]:
    return [str(y) for y in range(1950, 2036)]


def generate_common_passwords() -> list[str]:
    """The shipped list: common words and codes with the usual decorations, walks and
    number runs (lowercase, sorted, no duplicates)."""
    words = _BASE_WORDS.split()
    out: set[str] = set(words) | set(_NUMBER_CODES)
    decorations = list(_SUFFIXES) + list(_NUMBER_CODES) + _years()
    for word in words:
        for suffix in decorations:
            out.add(word + suffix)
            out.add(suffix + word)
        out.add(word + word)
        out.add("my" + word)
        out.add(word + "pass")
        out.add(word + "password")
    runs: set[str] = set()
    for walk in _WALKS:
        for length in range(6, len(walk) + 1):
            runs.add(walk[:length])
            runs.add(walk[::-1][:length])
    for digit in "0123456789":
        for length in range(6, 17):
            runs.add(digit * length)
    out |= runs
    for year in _years():
        for code in _NUMBER_CODES:
            out.add(year + code)
            out.add(code + year)
    # Shorter entries than the minimum length matter only as cores (words and codes).
    keep = set(words) | set(_NUMBER_CODES) | runs
    return sorted(p for p in out if len(p) >= MIN_PASSWORD_CHARS or p in keep)


@functools.cache
def _common() -> frozenset[str]:
    try:
        lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    except OSError:  # a broken install must not make every password acceptable
        return frozenset(generate_common_passwords())
    return frozenset(line.strip().lower() for line in lines
                     if line.strip() and not line.startswith("# "))  # "#123admin" is one


def _forms(password: str) -> set[str]:
    """The password as the common list is compared: lowercase without spaces, with and
    without look-alike digits, and each with digits and signs stripped from both ends."""
    plain = "".join(password.lower().split())
    forms = {plain}
    if core := plain.strip(_DECORATION):
        forms.add(core)
    return forms | {form.translate(_LOOKALIKE) for form in forms}


def _is_repeated(text: str) -> bool:
    n = len(text)
    return any(n % size == 0 and text[:size] * (n // size) == text
               for size in range(1, n // 2 + 1))


def _is_walk(text: str) -> bool:
    lowered = text.lower()
    for walk in _WALKS:
        for run in (walk * 3, walk[::-1] * 3):
            if lowered in run:
                return True
    return False


def password_problem(password: str, *, username: str = "") -> tuple[str, str] | None:
    """Why ``password`` is refused, as ``(English, zh-CN)``; None when it is acceptable."""
    if len(password) < MIN_PASSWORD_CHARS:
        return (f"password: at least {MIN_PASSWORD_CHARS} characters",
                f"密码至少 {MIN_PASSWORD_CHARS} 位")
    if len(set(password)) < MIN_DISTINCT_CHARS:
        return (f"password: at least {MIN_DISTINCT_CHARS} different characters",
                f"密码过于简单：至少要有 {MIN_DISTINCT_CHARS} 个不同的字符")
    if _is_repeated(password.lower()):
        return ("password: one piece repeated", "密码过于简单：不能由同一段字符重复组成")
    if _is_walk(password):
        return ("password: a keyboard or alphabet run", "密码过于简单：不能是键盘或字母、数字顺序")
    if _forms(password) & _common():
        return ("password: in the list of common passwords",
                "密码过于常见（在常用密码名单中），请另选")
    name = username.strip().lower()
    if len(name) >= 3 and name in "".join(password.lower().split()):
        return ("password: contains the user name", "密码不能包含用户名")
    return None


def check_password(password: str, *, username: str = "") -> None:
    """Raise :class:`InvalidInputError` (zh-CN) unless ``password`` passes every rule."""
    problem = password_problem(password, username=username)
    if problem is not None:
        raise InvalidInputError(*problem)


def write_common_passwords(path: Path = COMMON_PASSWORDS_FILE) -> int:
    """Write the generated list (with its header) to ``path``; returns the count."""
    from zhichao.common import write_atomic

    entries = generate_common_passwords()
    header = ("# Common passwords refused for staff accounts (zhichao.service.passwords).\n"
              "# Generated by `python -m zhichao.service.passwords` from well-known patterns:\n"
              "# most-used passwords and words of breach statistics (English, pinyin),\n"
              "# number codes, years, keyboard walks and number runs. Lowercase, one a line;\n"
              "# compared without case, spaces and look-alike digits. Comments start '# '.\n")
    write_atomic(path, (header + "\n".join(entries) + "\n").encode("utf-8"))
    return len(entries)


if __name__ == "__main__":
    count = write_common_passwords()
    sys.stdout.write(f"{count} passwords written to {COMMON_PASSWORDS_FILE}\n")
