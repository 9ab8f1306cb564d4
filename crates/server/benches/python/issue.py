"""The Python baseline of the issue benchmark (issue 16): generate, seal and store N records.

Run: python3 issue.py N DIR  (needs the `cryptography` package). Prints one line,
"records/s <rate>". What a brand owner could write in an afternoon instead of Imprint: one
random pass phrase per record, sealed with AES-256-GCM under one key (12-byte random nonce,
the apparatus ID as associated data), stored with sqlite3's executemany in one transaction,
WAL and synchronous=FULL, as the server stores its records.
"""
import os
import sqlite3
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def main():
    n, folder = int(sys.argv[1]), sys.argv[2]
    path = os.path.join(folder, "python.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute(
        "CREATE TABLE records (apparatus_id TEXT PRIMARY KEY, sealed BLOB NOT NULL, "
        "key_id INTEGER NOT NULL, factory_id TEXT NOT NULL, product_code TEXT NOT NULL, "
        "issued_ms INTEGER NOT NULL)"
    )
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    start = time.perf_counter()
    now = int(time.time() * 1000)

    def rows():
        for i in range(n):
            apparatus_id = "IMP-%010d" % i
            nonce = os.urandom(12)
            sealed = nonce + aead.encrypt(nonce, os.urandom(16), apparatus_id.encode())
            yield (apparatus_id, sealed, 1, "acme-sz", "CAM-X100", now)

    db.execute("BEGIN")
    db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows())
    db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    print("records/s %.0f" % (n / elapsed))


if __name__ == "__main__":
    main()
