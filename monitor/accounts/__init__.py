"""Accounts and their lifecycle: the registry of every account seen or imported, and dormancy.

`model` the records, `roster` the CSV import format, `memory` and `postgres` the two
registries behind one interface (`registry`), `lifecycle` the store-side step the delivery
runs around each delivery: check login attempts against the registry, record the batch's
activity, and sweep the registry for accounts that crossed the dormancy period.
"""
