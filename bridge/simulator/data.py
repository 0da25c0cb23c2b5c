"""The data generator: debtors, parents, learners and school profiles that look like d6's.

Records are built as plain dicts in exactly the shape d6 sends them (field order, types, empty strings,
`"0000-00-00"`, `\\r\\n` addresses), so the API layer can encode them without a conversion step. All
randomness comes from the `random.Random` passed in, which keeps a seed reproducible.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from bridge.simulator import names

OPEN_DATE = "0000-00-00"
"""d6's closing date for an account that is still open."""

GRADES: tuple[str, ...] = ("R", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12")

_EPOCH = dt.date(2015, 1, 1)
_SPAN_DAYS = 3650

Record = dict[str, Any]


def pick_gender(rng: random.Random) -> str:
    return "M" if rng.random() < 0.5 else "F"


def first_name(rng: random.Random, gender: str) -> str:
    return rng.choice(names.MALE_NAMES if gender == "M" else names.FEMALE_NAMES)


def mobile_number(rng: random.Random) -> str:
    return rng.choice(names.MOBILE_PREFIXES) + f"{rng.randrange(10_000_000):07d}"


def landline(rng: random.Random) -> str:
    return rng.choice(names.LANDLINE_PREFIXES) + f"{rng.randrange(10_000_000):07d}"


def address(rng: random.Random) -> str:
    town, code = rng.choice(names.TOWNS)
    return f"{rng.randint(1, 250)} {rng.choice(names.STREETS)}\r\n{town}\r\n{code}\r\nSouth Africa"


def sa_id_number(rng: random.Random, gender: str) -> str:
    """A 13-digit RSA id number with a valid Luhn check digit, so validators downstream accept it."""
    birth = dt.date(1965, 1, 1) + dt.timedelta(days=rng.randrange(365 * 35))
    sequence = rng.randrange(5000, 10000) if gender == "M" else rng.randrange(0, 5000)
    body = f"{birth:%y%m%d}{sequence:04d}08"
    return body + str(luhn_digit(body))


def luhn_digit(digits: str) -> int:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return (10 - total % 10) % 10


def random_date(rng: random.Random, after: dt.date | None = None) -> dt.date:
    start = after or _EPOCH
    return start + dt.timedelta(days=rng.randrange(1, _SPAN_DAYS))


def email_for(rng: random.Random, first: str, last: str) -> str:
    local = f"{first[0]}{last}".lower().replace(" ", "")
    if rng.random() < 0.5:
        local += str(rng.randint(1, 99))
    return f"{local}@{rng.choice(names.EMAIL_DOMAINS)}"


def make_debtor(
    rng: random.Random,
    person_id: int,
    debtor_code: str,
    *,
    surname: str | None = None,
    closed: bool = False,
) -> Record:
    """An accountable person as `GET .../accountablepersons` sends it (id as a string, as in d6's docs)."""
    gender = pick_gender(rng)
    first = first_name(rng, gender)
    last = surname or rng.choice(names.SURNAMES)
    second = first_name(rng, gender)
    title = "Dr" if rng.random() < 0.04 else ("Mr" if gender == "M" else rng.choice(("Mrs", "Ms")))
    local = rng.random() < 0.9
    employer = rng.choice(names.EMPLOYERS) if rng.random() < 0.8 else ""
    residential = address(rng)
    start = random_date(rng)
    return {
        "accountable_person_id": str(person_id),
        "title": title,
        "first_name": first,
        "full_names": f"{first} {second}" if second != first else first,
        "last_name": last,
        "debtor_code": debtor_code,
        "mobile_calling_code": "27",
        "mobile_number": mobile_number(rng),
        "work_tel_number": landline(rng) if rng.random() < 0.6 else "",
        "home_tel_number": landline(rng) if rng.random() < 0.5 else "",
        "email_address": email_for(rng, first, last),
        "residential_address": residential,
        "postal_address": residential if rng.random() < 0.7 else address(rng),
        "home_language": rng.choice(names.LANGUAGES),
        "nationality": "South Africa" if local else rng.choice(names.NATIONALITIES),
        "id_number": sa_id_number(rng, gender) if local else "",
        "passport_number": "" if local else f"A{rng.randrange(10**8, 10**9)}",
        "employer": employer,
        "employer_address": address(rng) if employer and employer != "Self-employed" else "",
        "account_closing_date": closing_date(rng, start) if closed else OPEN_DATE,
        "account_start_date": start.isoformat(),
    }


def closing_date(rng: random.Random, start: dt.date) -> str:
    return min(random_date(rng, start), dt.date(2025, 12, 31)).isoformat()


def make_parent(rng: random.Random, parent_id: int, surname: str) -> Record:
    """A parent who is not an accountable person (a learner's second parent, usually)."""
    gender = pick_gender(rng)
    first = first_name(rng, gender)
    return {
        "parent_id": parent_id,
        "title": "Mr" if gender == "M" else "Mrs",
        "first_name": first,
        "last_name": surname,
        "gender": gender,
        "mobile_calling_code": "27",
        "mobile_number": mobile_number(rng),
        "email_address": email_for(rng, first, surname),
    }


def debtor_as_parent(debtor: Record) -> Record:
    """The parent view of an accountable person, for `include_parents`."""
    title = debtor.get("title", "")
    return {
        "parent_id": int(debtor["accountable_person_id"]),
        "title": title,
        "first_name": debtor.get("first_name", ""),
        "last_name": debtor.get("last_name", ""),
        "gender": "M" if title == "Mr" else "F",
        "mobile_calling_code": debtor.get("mobile_calling_code", "27"),
        "mobile_number": debtor.get("mobile_number", ""),
        "email_address": debtor.get("email_address", ""),
    }


def make_learner(
    rng: random.Random,
    learner_id: int,
    debtor: Record | None,
    parent2_id: int | None,
) -> Record:
    """A learner as `GET .../learners` sends it (ids as integers, as v2 promises)."""
    gender = pick_gender(rng)
    person_id = int(debtor["accountable_person_id"]) if debtor is not None else None
    return {
        "learner_id": learner_id,
        "first_name": first_name(rng, gender),
        "last_name": debtor["last_name"] if debtor is not None else rng.choice(names.SURNAMES),
        "gender": gender,
        "grade": rng.choice(GRADES),
        "debtor_code": debtor["debtor_code"] if debtor is not None else "",
        "parent1_id": person_id,
        "parent2_id": parent2_id,
        "accountable_person_id": person_id,
    }


def nested_learner(learner: Record) -> Record:
    """The short learner object `include_learners` nests in a debtor (id as a string, as d6's docs show)."""
    return {
        "learner_id": str(learner["learner_id"]),
        "first_name": learner.get("first_name", ""),
        "last_name": learner.get("last_name", ""),
        "gender": learner.get("gender", ""),
        "grade": learner.get("grade", ""),
    }


def school_name(rng: random.Random) -> str:
    town, _ = rng.choice(names.TOWNS)
    return rng.choice(names.SCHOOL_PATTERNS).format(town=town)


def school_email(name: str, school_id: int) -> str:
    slug = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum())
    return f"admin@{slug[:24]}{school_id}.example.co.za"


def debtor_update(rng: random.Random, debtor: Record) -> Record:
    """The fields a real debtor changes between polls: a phone, an email, an address, an account."""
    choice = rng.randrange(5)
    if choice == 0:
        return {"mobile_number": mobile_number(rng)}
    if choice == 1:
        return {"email_address": email_for(rng, debtor.get("first_name", "x"), debtor.get("last_name", "x"))}
    if choice == 2:
        new_address = address(rng)
        return {"residential_address": new_address, "postal_address": new_address}
    if choice == 3:
        return {"employer": rng.choice(names.EMPLOYERS)}
    if debtor.get("account_closing_date") == OPEN_DATE:
        return {"account_closing_date": dt.date.today().isoformat()}
    return {"account_closing_date": OPEN_DATE}


def learner_update(rng: random.Random, learner: Record) -> Record:
    """A learner moves grade, or the school corrects a name."""
    if rng.random() < 0.7:
        return {"grade": rng.choice(GRADES)}
    return {"first_name": first_name(rng, str(learner.get("gender", "F")))}
