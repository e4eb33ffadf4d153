"""Write ``examples/sample-archive.jsonl``, a small but realistic polylogue archive file.

Why it exists: a new user needs an archive to try ``polylogue import`` on before trusting
it with their own conversations, and the archive format needs one file that holds every
hard case at once, so that export -> import -> export can be checked byte for byte
(``tests/archive/test_sample_archive.py``). The sample therefore mixes four providers,
several scripts (accents, CJK, Cyrillic, Arabic), emoji beyond U+FFFF and ZWJ sequences,
fenced Python and SQL, system and tool messages, messages without a timestamp, a U+0000,
untitled conversations, and attachments shared by several conversations.

The output is the same bytes on every run and machine: there is no clock and no random
number here, every choice is arithmetic on a conversation's index, and the lines are in
the order ``polylogue export`` writes (see "Order on export" in
``docs/archive-format.md``), so that exporting an imported sample gives this file back.
After editing the templates, regenerate and commit both files::

    python examples/make_sample_archive.py            # writes examples/sample-archive.jsonl
    python examples/make_sample_archive.py -o PATH    # writes PATH
"""

# The templates are deliberately written in several scripts: their fullwidth punctuation
# and Cyrillic letters are the point, not look-alikes of ASCII.
# ruff: noqa: RUF001

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from polylogue.archive.format import encode_bundle, encode_header, encode_run
from polylogue.storage.records import (
    AttachmentRecord,
    ConversationRecord,
    MessageRecord,
    RunRecord,
)
from polylogue.storage.repository import Bundle

DEFAULT_OUTPUT = Path(__file__).resolve().with_name("sample-archive.jsonl")

Turn = tuple[str, str]
"""(role, text) of one message in a template."""


@dataclass(frozen=True)
class FileSpec:
    """An attachment as every reference to it repeats it (the shared attachment row)."""

    path: str
    mime_type: str
    size_bytes: int
    meta: dict[str, Any] | None

    @property
    def attachment_id(self) -> str:
        # Content-derived ids, as exporters dedupe files: the same file uploaded to two
        # assistants is one attachment referenced twice.
        return "att-" + hashlib.sha256(self.path.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Topic:
    """A hand-written conversation: titles for its first and later uses, and its turns.

    ``files`` names entries of :data:`FILES` with where each is referenced: True on the
    first user message, False on the conversation as a whole.
    """

    title: str
    alt_title: str
    turns: tuple[Turn, ...]
    files: tuple[tuple[str, bool], ...] = ()


FILES: dict[str, FileSpec] = {
    "schema": FileSpec(
        "attachments/orders-schema.png", "image/png", 48213, {"height": 640, "width": 1024}
    ),
    "architecture": FileSpec(
        "attachments/architecture-diagram-v3.png",
        "image/png",
        231877,
        {"height": 1080, "width": 1920},
    ),
    "menu": FileSpec(
        "attachments/ラーメン屋のメニュー.jpg",
        "image/jpeg",
        1532090,
        {"height": 3024, "width": 4032},
    ),
    "invoice": FileSpec(
        "attachments/invoice-2026-0217.pdf", "application/pdf", 182044, {"pages": 2}
    ),
    "paper": FileSpec(
        "attachments/training-language-models-with-human-feedback.pdf",
        "application/pdf",
        2811420,
        {"pages": 68},
    ),
    "crm": FileSpec("attachments/crm-export.csv", "text/csv", 904112, None),
    "traceback": FileSpec(
        "attachments/screenshot-traceback.png", "image/png", 88410, {"height": 900, "width": 1440}
    ),
}

CHAT_TOPICS: tuple[Topic, ...] = (
    Topic(
        "Flaky pytest fixture with tmp_path",
        "Why does my fixture leak state between tests?",
        (
            (
                "user",
                "My tests pass one by one but fail when I run the whole suite. The fixture:\n\n"
                "```python\nimport pytest\n\nCACHE = {}\n\n\n@pytest.fixture\n"
                'def store(tmp_path):\n    CACHE["root"] = tmp_path\n    return CACHE\n```\n\n'
                "What am I doing wrong?",
            ),
            (
                "assistant",
                "`CACHE` lives at module level, so every test gets the same dict and sees "
                "what earlier tests put in it. Return a fresh object from the fixture:\n\n"
                "```python\nimport pytest\n\n\n@pytest.fixture\ndef store(tmp_path):\n"
                '    return {"root": tmp_path}\n```\n\n'
                'If you really want a shared cache, make that explicit with `scope="session"` '
                "and clear it in a finalizer.",
            ),
            ("user", "That was it 🧪 all 214 tests green now. Thanks!"),
            (
                "assistant",
                "Glad it worked! Running with `-p randomly` now and then catches this early.",
            ),
        ),
        (("traceback", True),),
    ),
    Topic(
        "Running total per customer in SQL",
        "Cumulative sum with a window function",
        (
            (
                "user",
                "I have a table `orders(customer_id, ordered_at, amount)` (schema attached). "
                "How do I get a running total per customer in PostgreSQL?",
            ),
            (
                "assistant",
                "A window function does it in one pass:\n\n```sql\nSELECT\n    customer_id,\n"
                "    ordered_at,\n    amount,\n    sum(amount) OVER (\n"
                "        PARTITION BY customer_id\n        ORDER BY ordered_at\n"
                "        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW\n"
                "    ) AS running_total\nFROM orders\nORDER BY customer_id, ordered_at;\n```\n\n"
                "The `ROWS` frame matters when two orders share a timestamp: the default "
                "`RANGE` frame would add both at once.",
            ),
            ("user", "Does the same query work in SQLite?"),
            (
                "assistant",
                "Yes, SQLite has supported window functions since 3.25 (2018), so it runs "
                "unchanged.",
            ),
        ),
        (("schema", True),),
    ),
    Topic(
        "Crème brûlée sans chalumeau",
        "Caraméliser le sucre au four",
        (
            (
                "user",
                "Comment caraméliser une crème brûlée sans chalumeau ? Je n'ai qu'un four "
                "et six ramequins.",
            ),
            (
                "assistant",
                "Bonne nouvelle : le gril du four suffit.\n\n"
                "1. Laissez les crèmes au réfrigérateur au moins 4 h, elles doivent être "
                "très froides.\n"
                "2. Saupoudrez une fine couche de cassonade (environ 1 c. à café par ramequin).\n"
                "3. Placez-les au plus près du gril, porte entrouverte, 2 à 4 minutes.\n"
                "4. Surveillez sans arrêt : le sucre passe du doré au brûlé en quelques "
                "secondes.\n\n"
                "Remettez-les 10 minutes au frais pour que le caramel durcisse. Bon appétit ! 🍮",
            ),
        ),
    ),
    Topic(
        "東京3泊4日の旅行プラン",
        "浅草・鎌倉・渋谷を回る順番",
        (
            (
                "user",
                "東京で3泊4日の旅行を計画しています。浅草、渋谷、鎌倉に行きたいです。"
                "写真のラーメン屋にも行きたいです。おすすめの順番は？",
            ),
            (
                "assistant",
                "おすすめの順番は次のとおりです：\n\n"
                "1日目：浅草（浅草寺、仲見世通り）🏮\n"
                "2日目：鎌倉へ日帰り（江ノ電で長谷寺、鶴岡八幡宮）\n"
                "3日目：渋谷と原宿、夜は写真のラーメン屋 🍜\n"
                "4日目：お土産を買って空港へ ✈️\n\n"
                "鎌倉は週末に混むので、平日に行くのがおすすめです。",
            ),
            ("user", "ありがとう！Suicaは必要ですか？"),
            ("assistant", "はい、電車とバスがすべてタッチで乗れるので便利です。"),
        ),
        (("menu", True),),
    ),
    Topic(
        "Настройка потоковой репликации PostgreSQL",
        "Реплика PostgreSQL 16 на втором сервере",
        (
            ("user", "Как настроить потоковую репликацию в PostgreSQL 16 между двумя серверами?"),
            (
                "assistant",
                "Кратко, по шагам:\n\n"
                "1. На основном сервере создайте роль для репликации:\n\n"
                "```sql\nCREATE ROLE replicator WITH REPLICATION LOGIN\n"
                "    PASSWORD 'сменить-меня';\n```\n\n"
                "2. Разрешите подключение в `pg_hba.conf` и проверьте `wal_level = replica`.\n"
                "3. На реплике выполните:\n\n"
                "```\npg_basebackup -h primary -U replicator \\\n"
                "    -D /var/lib/postgresql/16/main -R -P\n```\n\n"
                "Флаг `-R` сам создаст `standby.signal` и строку подключения. "
                "Запустите сервер — готово.",
            ),
            ("user", "А как проверить, что реплика не отстаёт?"),
            (
                "assistant",
                "На основном сервере посмотрите представление `pg_stat_replication`: "
                "столбец `replay_lag` показывает задержку.",
            ),
        ),
    ),
    Topic(
        "ترجمة رسالة ترحيب",
        "رسالة ترحيب بالموظفين الجدد",
        (
            (
                "user",
                "ترجم هذه الرسالة إلى الإنجليزية من فضلك: "
                "«أهلاً وسهلاً بكم في فريقنا، نتمنى لكم بداية موفقة.»",
            ),
            (
                "assistant",
                "The translation: “Welcome to our team, we wish you a successful start.”\n\n"
                "For a warmer tone you could write: “We're so glad to have you on the team!”",
            ),
            ("user", "شكراً جزيلاً! 🙏"),
            ("assistant", "عفواً! يسعدني المساعدة."),
        ),
    ),
    Topic(
        "Birthday message for Priya 🎂",
        "A warm card text for a colleague",
        (
            (
                "user",
                "Write a short, warm birthday message for my colleague Priya from the whole "
                "data team. She loves rock climbing and our lab experiments 🧪",
            ),
            (
                "assistant",
                "Happy birthday, Priya! 🎉👩‍💻\n\nFrom the whole data team: thank you for the "
                "curiosity you bring to every experiment. May your holds be solid, your "
                "p-values small and your weekends full of granite 🧗‍♀️🧪",
            ),
            ("user", "Perfect, maybe one more emoji for the cake?"),
            ("assistant", "Add 🎂 at the end, or 🧁 if the team is bringing cupcakes."),
        ),
    ),
    Topic(
        "Explain Big-O like I'm new to it",
        "Big-O notation, with examples",
        (
            ("user", "Can you explain Big-O notation with simple examples?"),
            (
                "assistant",
                "Big-O describes how the work grows as the input size n grows:\n\n"
                "- O(1): reading `items[0]`, the same work for any n.\n"
                "- O(log n): binary search halves the range each step.\n"
                "- O(n): summing a list looks at each element once.\n"
                "- O(n²): comparing every pair, e.g. a naive duplicate check.\n\n"
                "For example Σᵢ i for i = 1…n is n(n+1)/2, which is O(n²) work if you add "
                "the terms pair by pair, but O(1) with the formula.",
            ),
        ),
    ),
    Topic(
        "Clean up a CSV export with stray NUL bytes",
        "pandas fails on our CRM export",
        (
            (
                "user",
                "This CSV from our CRM breaks pandas. One row looks like "
                "`1042,Ana\x00María,ana@example.com`. How do I clean it?",
            ),
            (
                "assistant",
                "The file has NUL bytes inside fields. Let me count them first.\n\n"
                "```python\nfrom pathlib import Path\n\n"
                'raw = Path("crm-export.csv").read_bytes()\n'
                'print("rows:", raw.count(b"\\n"), "NUL bytes:", raw.count(b"\\x00"))\n```',
            ),
            ("tool", "rows: 5120 NUL bytes: 3"),
            (
                "assistant",
                "Only 3, so dropping them is safe:\n\n"
                "```python\nimport io\n\nimport pandas as pd\n\n"
                'clean = raw.replace(b"\\x00", b"")\n'
                'df = pd.read_csv(io.BytesIO(clean), encoding="utf-8")\n```\n\n'
                "Then report the bug to the CRM vendor: their export should never write NUL.",
            ),
        ),
        (("crm", True),),
    ),
    Topic(
        "Revisión de un haiku en español",
        "¿Cumple mi haiku la métrica 5-7-5?",
        (
            (
                "user",
                "¿Puedes revisar este haiku?\n\nNiño en la montaña\n"
                "el sol de otoño se esconde\nmañana, más frío",
            ),
            (
                "assistant",
                "¡Claro! La imagen es bonita. La métrica: «Ni-ño en la mon-ta-ña» tiene 6 "
                "sílabas, así que sobra una. Prueba con «Niño en el monte» (5). "
                "Los otros versos cumplen 7 y 5. 🍂",
            ),
        ),
    ),
    Topic(
        "三个月的机器学习学习计划",
        "机器学习入门：每周十小时",
        (
            (
                "user",
                "请帮我制定一个三个月的机器学习学习计划，每周大约十个小时。附件是我想读的论文。",
            ),
            (
                "assistant",
                "好的！以下是一个循序渐进的计划：\n\n"
                "第1个月：Python、NumPy 和线性代数基础。\n"
                "第2个月：监督学习（线性回归、决策树），在 Kaggle 上做两个小项目。\n"
                "第3个月：神经网络入门，最后精读你附上的论文。\n\n"
                "每周留一个小时复习，效果会更好。📚",
            ),
        ),
        (("paper", False),),
    ),
    Topic(
        "Review this service architecture diagram",
        "Single points of failure in our architecture",
        (
            (
                "user",
                "Attached is our current architecture. Where are the single points of failure?",
            ),
            (
                "assistant",
                "From the diagram, three stand out:\n\n"
                "1. One PostgreSQL primary without a replica: a disk failure stops everything.\n"
                "2. The Redis cache is also the session store, so a restart logs everyone out.\n"
                "3. A single NAT gateway for the worker subnet.\n\n"
                "The first is the most urgent: add a streaming replica and test a failover.",
            ),
        ),
        (("architecture", True), ("architecture", False)),
    ),
    Topic(
        "Summarise an invoice PDF",
        "Check the VAT on an invoice",
        (
            (
                "user",
                "Can you summarise the attached invoice and check the VAT? "
                "The total should be €1 234,56.",
            ),
            (
                "assistant",
                "Invoice Nº 2026-0217 from Müller & Søn GmbH:\n\n"
                "- Net: €1 028,80\n- VAT 20 %: €205,76\n- Total: €1 234,56 ✓\n\n"
                "The VAT matches the net amount. Payment is due within 30 days.",
            ),
        ),
        (("invoice", True),),
    ),
    Topic(
        "Deduplicate customers by email",
        "Remove duplicate customer rows",
        (
            (
                "user",
                "Our `customers` table has duplicates that differ only in the email's case. "
                "How do I keep the oldest row of each?",
            ),
            (
                "assistant",
                "Rank the rows per lower-cased email and delete all but the first:\n\n"
                "```sql\nWITH ranked AS (\n    SELECT\n        id,\n"
                "        row_number() OVER (\n            PARTITION BY lower(email)\n"
                "            ORDER BY created_at, id\n        ) AS rn\n    FROM customers\n)\n"
                "DELETE FROM customers\nWHERE id IN (SELECT id FROM ranked WHERE rn > 1);\n```\n\n"
                "Run it inside a transaction and check the count before you commit.",
            ),
            ("user", "And how do I stop new duplicates?"),
            (
                "assistant",
                "Add a unique index on the expression:\n\n"
                "```sql\nCREATE UNIQUE INDEX customers_email_key ON customers (lower(email));\n```",
            ),
        ),
        (("schema", False),),
    ),
)

CODEX_SYSTEM = (
    "You are Codex, a coding agent running in the user's terminal. "
    "Ask before running commands that modify files outside the workspace."
)

CODEX_TOPICS: tuple[Topic, ...] = (
    Topic(
        "Add type hints to utils.py",
        "mypy --strict on the utils module",
        (
            ("user", "Add type hints to `src/ledger/utils.py` so that `mypy --strict` passes."),
            ("assistant", "Running mypy first to see what fails."),
            (
                "tool",
                "$ mypy --strict src/ledger/utils.py\n"
                "src/ledger/utils.py:12: error: Function is missing a type annotation"
                "  [no-untyped-def]\n"
                "Found 1 error in 1 file (checked 1 source file)",
            ),
            (
                "assistant",
                "One function to annotate:\n\n```python\nfrom decimal import Decimal\n\n\n"
                "def parse_amount(text: str) -> Decimal:\n"
                '    return Decimal(text.replace(",", "."))\n```\n\n'
                "`mypy --strict` is clean now.",
            ),
        ),
    ),
    Topic(
        "Fix the failing migration test",
        "test_migrate_v2 fails on SQLite",
        (
            (
                "user",
                "`tests/test_migrate.py::test_migrate_v2` fails since yesterday. Can you fix it?",
            ),
            (
                "tool",
                "$ pytest -q tests/test_migrate.py -k v2\n"
                "E   sqlite3.OperationalError: no such column: archived_at\n"
                "1 failed in 0.41s",
            ),
            (
                "assistant",
                "The migration adds `archived_at` after the query that reads it. "
                "I moved the column first:\n\n"
                "```sql\nALTER TABLE accounts ADD COLUMN archived_at TEXT;\n"
                "UPDATE accounts SET archived_at = closed_at WHERE status = 'closed';\n```",
            ),
            ("tool", "$ pytest -q tests/test_migrate.py\n12 passed in 0.97s"),
            ("assistant", "All 12 migration tests pass. 🧪"),
        ),
        (("traceback", True),),
    ),
    Topic(
        "Speed up the CSV importer",
        "Profile import_csv.py",
        (
            ("user", "Importing `crm-export.csv` takes 40 s. Find out why and make it faster."),
            (
                "tool",
                "$ python -m cProfile -s cumtime scripts/import_csv.py crm-export.csv | head -5\n"
                "   ncalls  tottime  cumtime  filename:lineno(function)\n"
                "     5120   31.204   38.911  db.py:44(insert_row)",
            ),
            (
                "assistant",
                "Each row commits on its own. Batching the inserts in one transaction:\n\n"
                "```python\nwith conn:\n    conn.executemany(INSERT_ROW, rows)\n```\n\n"
                "brings the import down to 1.3 s.",
            ),
        ),
        (("crm", False),),
    ),
    Topic(
        "Document the service layout",
        "Write docs/architecture.md",
        (
            ("user", "Write `docs/architecture.md` from the diagram in the repo."),
            ("tool", "$ ls docs\narchitecture-diagram-v3.png  index.md"),
            (
                "assistant",
                "Written `docs/architecture.md`: the API, the worker pool, PostgreSQL and "
                "Redis, with the data flow between them and a note on the single NAT gateway.",
            ),
        ),
        (("architecture", False),),
    ),
    Topic(
        "Rename the `acct` module to `accounts`",
        "Module rename across the codebase",
        (
            ("user", "Rename the `acct` package to `accounts` everywhere, imports included."),
            ("tool", "$ git grep -l 'import acct' | wc -l\n17"),
            ("assistant", "17 files import it. Renaming with `git mv` and updating the imports."),
            ("tool", "$ pytest -q\n214 passed in 6.02s"),
            ("assistant", "Done: the package is `accounts`, 17 files updated, all tests pass."),
        ),
    ),
)

FOLLOW_UPS: tuple[tuple[Turn, Turn], ...] = (
    (("user", "Thanks, that helps a lot! 👍"), ("assistant", "You're welcome! Ask any time.")),
    (
        ("user", "Could you turn this into a checklist for later?"),
        (
            "assistant",
            "Here it is:\n\n- [ ] Reread the steps above\n- [ ] Try them on a small example\n"
            "- [ ] Note what surprised you",
        ),
    ),
    (
        ("user", "Quick check: is this still accurate in 2026?"),
        (
            "assistant",
            "As far as I know nothing here has changed, but check the documentation of the "
            "version you use.",
        ),
    ),
)

PROVIDERS: tuple[tuple[str, dict[str, Any], datetime, timezone], ...] = (
    # name, conversation provider_meta, first conversation's start, the export's time zone
    (
        "chatgpt",
        {"model": "gpt-4o", "source": "chatgpt-export-2026-01"},
        datetime(2026, 1, 3, 8, 15, tzinfo=UTC),
        UTC,
    ),
    (
        "claude",
        {"model": "claude-3-5-sonnet-20241022", "source": "claude-export-2026-01"},
        datetime(2026, 1, 4, 14, 5, tzinfo=UTC),
        timezone(timedelta(hours=1)),
    ),
    (
        "gemini",
        {"model": "gemini-1.5-pro", "source": "google-takeout-2026-02"},
        datetime(2026, 2, 2, 9, 40, tzinfo=UTC),
        timezone(timedelta(hours=9)),
    ),
    (
        "codex",
        {"cli_version": "0.42.0", "model": "gpt-5-codex", "source": "codex-sessions"},
        datetime(2026, 2, 3, 17, 20, tzinfo=UTC),
        timezone(timedelta(hours=-5)),
    ),
)

PER_PROVIDER = 9
"""Conversations per provider: 36 in all."""


def sha256_hex(value: Any) -> str:
    """The content hash: sha256 of the canonical JSON of ``value`` (sorted keys, UTF-8)."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fake_uuid(seed: str) -> str:
    """A UUID-shaped id derived from ``seed``, as ChatGPT and Claude exports use."""
    h = hashlib.sha256(seed.encode("utf-8")).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _topic(provider: str, index: int) -> tuple[Topic, bool]:
    """The template of a provider's ``index``-th conversation, and whether it is a reuse."""
    if provider == "codex":
        return CODEX_TOPICS[index % len(CODEX_TOPICS)], index >= len(CODEX_TOPICS)
    # The 27 chat conversations step through the 14 topics by 5 (coprime with 14): each
    # provider gets a mix, and a topic's second use lands at another provider.
    chat = [name for name, *_ in PROVIDERS if name != "codex"]
    k = chat.index(provider) * PER_PROVIDER + index
    return CHAT_TOPICS[k * 5 % len(CHAT_TOPICS)], k >= len(CHAT_TOPICS)


def build_bundle(provider_index: int, index: int) -> Bundle:
    """One conversation of the sample, its messages and attachment references."""
    provider, conv_meta, first_start, zone = PROVIDERS[provider_index]
    topic, reuse = _topic(provider, index)
    cid = f"{provider}:conv-{index + 1:04d}"
    start = first_start + timedelta(days=3 * index, hours=(index * 7) % 10, minutes=index * 13)

    turns: list[Turn] = list(topic.turns)
    if reuse:
        asked, answered = FOLLOW_UPS[index % len(FOLLOW_UPS)]
        turns += [asked, answered]
    if provider == "codex":
        turns.insert(0, ("system", CODEX_SYSTEM))
    elif provider == "chatgpt" and index % 3 == 0:
        turns.insert(0, ("system", "You are ChatGPT. Answer concisely."))
    # A Takeout without activity times: every message of this conversation lacks one.
    untimed = provider == "gemini" and index == 4

    messages: list[MessageRecord] = []
    clock = start
    for number, (role, text) in enumerate(turns, start=1):
        # Exports give the system prompt no time of its own.
        timestamp = None if untimed or role == "system" else clock.astimezone(zone).isoformat()
        if timestamp is not None:
            clock += timedelta(minutes=1 + (len(text) % 4), seconds=(number * 17) % 60)
        mid = f"{cid}:m{number:03d}"
        meta: dict[str, Any] | None = None
        if provider == "chatgpt":
            meta = {"parent": messages[-1].provider_message_id if messages else None}
            if role == "assistant":
                meta |= {"finish_reason": "stop", "model_slug": "gpt-4o"}
        elif provider == "codex" and role == "tool":
            meta = {"duration_s": round(0.25 + (number % 7) * 0.5, 2), "exit_code": 0}
        elif provider == "claude" and role == "assistant":
            meta = {"stop_reason": "end_turn", "usage": {"output_tokens": 40 + len(text) // 4}}
        messages.append(
            MessageRecord(
                message_id=mid,
                conversation_id=cid,
                provider_message_id=None if provider == "gemini" else fake_uuid(mid),
                role=role,
                text=text,
                timestamp=timestamp,
                content_hash=sha256_hex({"role": role, "text": text, "timestamp": timestamp}),
                provider_meta=meta,
            )
        )

    first_user = next(m.message_id for m in messages if m.role == "user")
    attachments = [
        AttachmentRecord(
            attachment_id=FILES[key].attachment_id,
            conversation_id=cid,
            message_id=first_user if on_message else None,
            mime_type=FILES[key].mime_type,
            size_bytes=FILES[key].size_bytes,
            path=FILES[key].path,
            provider_meta=FILES[key].meta,
        )
        for key, on_message in topic.files
    ]

    times = [m.timestamp for m in messages if m.timestamp is not None]
    title: str | None = topic.alt_title if reuse else topic.title
    if index % 8 == 5:
        title = None  # never named: the provider shows "New chat"
    conversation = ConversationRecord(
        conversation_id=cid,
        provider_name=provider,
        provider_conversation_id=(
            f"rollout-{start.date().isoformat()}-{fake_uuid(cid)}"
            if provider == "codex"
            else fake_uuid(cid)
        ),
        title=title,
        created_at=times[0] if times else start.astimezone(zone).isoformat(),
        updated_at=times[-1] if times else start.astimezone(zone).isoformat(),
        content_hash=sha256_hex(
            {
                "attachments": sorted(a.attachment_id for a in attachments),
                "messages": [m.content_hash for m in messages],
                "title": title,
            }
        ),
        # One conversation from before exports carried metadata.
        provider_meta=None if (provider, index) == ("claude", 2) else dict(conv_meta),
        version=2 if index % 4 == 3 else 1,  # edited after the first import
    )
    return conversation, messages, attachments


def build_runs(bundles: Sequence[Bundle]) -> list[RunRecord]:
    """Two import runs: ChatGPT and Claude in February, Gemini and Codex in March."""
    runs = []
    for run_id, timestamp, providers, duration_ms, drift in (
        ("run-2026-02-01-a", "2026-02-01T07:30:00+00:00", ("chatgpt", "claude"), 1840, None),
        (
            "run-2026-03-05-a",
            "2026-03-05T18:02:11+00:00",
            ("gemini", "codex"),
            2715,
            {"changed_conversations": 0, "new_sources": ["google-takeout-2026-02"]},
        ),
    ):
        mine = [b for b in bundles if b[0].provider_name in providers]
        counts = {
            "attachments": sum(len(b[2]) for b in mine),
            "conversations": len(mine),
            "messages": sum(len(b[1]) for b in mine),
        }
        runs.append(
            RunRecord(
                run_id=run_id,
                timestamp=timestamp,
                plan_snapshot={"mode": "incremental", "sources": list(providers)},
                counts=counts,
                drift=drift,
                indexed=True,
                duration_ms=duration_ms,
            )
        )
    return runs


def export_order(
    runs: Sequence[RunRecord], bundles: Sequence[Bundle]
) -> tuple[list[RunRecord], list[Bundle]]:
    """Runs and bundles in the order ``polylogue export`` writes them.

    Python compares strings by code point, which is the order of their UTF-8 bytes.
    """
    ordered_runs = sorted(runs, key=lambda r: (r.timestamp, r.run_id), reverse=True)
    ordered: list[Bundle] = []
    for conversation, messages, attachments in sorted(bundles, key=lambda b: b[0].conversation_id):
        ordered.append(
            (
                conversation,
                sorted(
                    messages,
                    key=lambda m: (m.timestamp is not None, m.timestamp or "", m.message_id),
                ),
                sorted(
                    attachments,
                    key=lambda a: (a.attachment_id, a.message_id is not None, a.message_id or ""),
                ),
            )
        )
    return ordered_runs, ordered


def build_archive() -> bytes:
    """The whole sample file."""
    bundles = [build_bundle(p, i) for p in range(len(PROVIDERS)) for i in range(PER_PROVIDER)]
    runs, bundles = export_order(build_runs(bundles), bundles)
    parts = [encode_header()]
    parts += [encode_run(run) for run in runs]
    parts += [encode_bundle(*bundle) for bundle in bundles]
    return b"".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"where to write the archive (default: {DEFAULT_OUTPUT.name} next to this script)",
    )
    args = parser.parse_args(argv)
    output: Path = args.output
    data = build_archive()
    try:
        output.write_bytes(data)
    except OSError as exc:
        print(
            f"make_sample_archive: cannot write {output}: {exc.strerror}"
            " (create its directory or pass another path with -o)",
            file=sys.stderr,
        )
        return 1
    lines = data.count(b"\n")
    print(f"wrote {output} ({lines} lines, {len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
