"""The canonical 120-breed table of Stanford Dogs, and breed-name lookup.

Every command that names a breed goes through this module, so a breed is spelled one way everywhere: its WordNet
id (``n02099601``) is the stored key, its Stanford folder name (``n02099601-golden_retriever``) is the dataset key,
and its display name ("Golden retriever") is what people read.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from dogbreed.errors import DogbreedError

# The Stanford Dogs folders, in the dataset's own (WordNet id) order.
STANFORD_FOLDERS: tuple[str, ...] = (
    "n02085620-Chihuahua",
    "n02085782-Japanese_spaniel",
    "n02085936-Maltese_dog",
    "n02086079-Pekinese",
    "n02086240-Shih-Tzu",
    "n02086646-Blenheim_spaniel",
    "n02086910-papillon",
    "n02087046-toy_terrier",
    "n02087394-Rhodesian_ridgeback",
    "n02088094-Afghan_hound",
    "n02088238-basset",
    "n02088364-beagle",
    "n02088466-bloodhound",
    "n02088632-bluetick",
    "n02089078-black-and-tan_coonhound",
    "n02089867-Walker_hound",
    "n02089973-English_foxhound",
    "n02090379-redbone",
    "n02090622-borzoi",
    "n02090721-Irish_wolfhound",
    "n02091032-Italian_greyhound",
    "n02091134-whippet",
    "n02091244-Ibizan_hound",
    "n02091467-Norwegian_elkhound",
    "n02091635-otterhound",
    "n02091831-Saluki",
    "n02092002-Scottish_deerhound",
    "n02092339-Weimaraner",
    "n02093256-Staffordshire_bullterrier",
    "n02093428-American_Staffordshire_terrier",
    "n02093647-Bedlington_terrier",
    "n02093754-Border_terrier",
    "n02093859-Kerry_blue_terrier",
    "n02093991-Irish_terrier",
    "n02094114-Norfolk_terrier",
    "n02094258-Norwich_terrier",
    "n02094433-Yorkshire_terrier",
    "n02095314-wire-haired_fox_terrier",
    "n02095570-Lakeland_terrier",
    "n02095889-Sealyham_terrier",
    "n02096051-Airedale",
    "n02096177-cairn",
    "n02096294-Australian_terrier",
    "n02096437-Dandie_Dinmont",
    "n02096585-Boston_bull",
    "n02097047-miniature_schnauzer",
    "n02097130-giant_schnauzer",
    "n02097209-standard_schnauzer",
    "n02097298-Scotch_terrier",
    "n02097474-Tibetan_terrier",
    "n02097658-silky_terrier",
    "n02098105-soft-coated_wheaten_terrier",
    "n02098286-West_Highland_white_terrier",
    "n02098413-Lhasa",
    "n02099267-flat-coated_retriever",
    "n02099429-curly-coated_retriever",
    "n02099601-golden_retriever",
    "n02099712-Labrador_retriever",
    "n02099849-Chesapeake_Bay_retriever",
    "n02100236-German_short-haired_pointer",
    "n02100583-vizsla",
    "n02100735-English_setter",
    "n02100877-Irish_setter",
    "n02101006-Gordon_setter",
    "n02101388-Brittany_spaniel",
    "n02101556-clumber",
    "n02102040-English_springer",
    "n02102177-Welsh_springer_spaniel",
    "n02102318-cocker_spaniel",
    "n02102480-Sussex_spaniel",
    "n02102973-Irish_water_spaniel",
    "n02104029-kuvasz",
    "n02104365-schipperke",
    "n02105056-groenendael",
    "n02105162-malinois",
    "n02105251-briard",
    "n02105412-kelpie",
    "n02105505-komondor",
    "n02105641-Old_English_sheepdog",
    "n02105855-Shetland_sheepdog",
    "n02106030-collie",
    "n02106166-Border_collie",
    "n02106382-Bouvier_des_Flandres",
    "n02106550-Rottweiler",
    "n02106662-German_shepherd",
    "n02107142-Doberman",
    "n02107312-miniature_pinscher",
    "n02107574-Greater_Swiss_Mountain_dog",
    "n02107683-Bernese_mountain_dog",
    "n02107908-Appenzeller",
    "n02108000-EntleBucher",
    "n02108089-boxer",
    "n02108422-bull_mastiff",
    "n02108551-Tibetan_mastiff",
    "n02108915-French_bulldog",
    "n02109047-Great_Dane",
    "n02109525-Saint_Bernard",
    "n02109961-Eskimo_dog",
    "n02110063-malamute",
    "n02110185-Siberian_husky",
    "n02110627-affenpinscher",
    "n02110806-basenji",
    "n02110958-pug",
    "n02111129-Leonberg",
    "n02111277-Newfoundland",
    "n02111500-Great_Pyrenees",
    "n02111889-Samoyed",
    "n02112018-Pomeranian",
    "n02112137-chow",
    "n02112350-keeshond",
    "n02112706-Brabancon_griffon",
    "n02113023-Pembroke",
    "n02113186-Cardigan",
    "n02113624-toy_poodle",
    "n02113712-miniature_poodle",
    "n02113799-standard_poodle",
    "n02113978-Mexican_hairless",
    "n02115641-dingo",
    "n02115913-dhole",
    "n02116738-African_hunting_dog",
)

_FOLDER_RE = re.compile(r"^(n\d{8})-(.+)$")
OWN_PREFIX = "own:"  # own breeds' keys; a WordNet id is n + 8 digits, so the two can never collide
OWN_KEY_RE = re.compile(r"^own:[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_NAME = 64
MAX_NOTE = 500


@dataclass(frozen=True)
class Breed:
    index: int  # Stanford's order (own breeds: -1)
    wnid: str  # the breed's key: its WordNet id, or own:<slug> for a breed of the user's own
    folder: str  # Stanford's folder name ("" for own breeds)
    name: str  # what people read
    own: bool = False
    note: str = ""


def _display_name(folder: str) -> str:
    raw = folder.split("-", 1)[1].replace("_", " ")
    return raw[:1].upper() + raw[1:]


BREEDS: tuple[Breed, ...] = tuple(
    Breed(i, folder.split("-", 1)[0], folder, _display_name(folder)) for i, folder in enumerate(STANFORD_FOLDERS)
)
BY_WNID: dict[str, Breed] = {b.wnid: b for b in BREEDS}


def _key(text: str) -> str:
    """Case- and separator-insensitive key: 'Golden_Retriever', 'golden retriever' and 'golden-retriever' agree
    (letters of any script count; punctuation and spaces do not)."""
    return re.sub(r"[\W_]+", "", text.casefold())


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\W_]+", text.casefold()) if w]


def is_own(key: str | None) -> bool:
    return bool(key) and key.startswith(OWN_PREFIX)


def _aliases(b: Breed) -> tuple[str, ...]:
    return (b.wnid, b.name) if b.own else (b.wnid, b.folder, b.name, b.folder.split("-", 1)[1])


def _word_match(query: list[str], name: str) -> bool:
    """Every query word starts a different word of ``name`` ('golden' -> Golden retriever, 'ger shep' -> German
    shepherd)."""
    words = _words(name)
    for q in query:
        hit = next((w for w in words if w.startswith(q)), None)
        if hit is None:
            return False
        words.remove(hit)
    return True


class Vocabulary:
    """Stanford's 120 breeds plus the user's own (from the store): the one breed matcher every option that takes
    a breed goes through. A name matches exactly (case and separators ignored) or, failing that, by a unique
    prefix or word match; an ambiguous name lists the candidates; an unknown one suggests close names and says how
    to add a breed of one's own, so a typo never creates a breed."""

    def __init__(self, own: Iterable[Breed] = ()):
        self.own = tuple(own)
        self.breeds = BREEDS + self.own
        self.by_key = {b.wnid: b for b in self.breeds}
        self._exact = {_key(alias): b for b in self.breeds for alias in _aliases(b)}

    def find(self, text: str) -> Breed | None:
        """The breed named exactly by a key, Stanford folder name or name (case and separators ignored)."""
        return self._exact.get(_key(text))

    def candidates(self, text: str) -> list[Breed]:
        """Breeds a partial name could mean: a prefix of the name, or every word starting a word of it."""
        key, words = _key(text), _words(text)
        if not key:
            return []
        found = [b for b in self.breeds if _key(b.name).startswith(key) or (words and _word_match(words, b.name))]
        return found

    def resolve(self, text: str) -> Breed:
        breed = self.find(text)
        if breed is not None:
            return breed
        found = self.candidates(text)
        if len(found) == 1:
            return found[0]
        shown = repr(text[:80])
        if found:
            names = ", ".join(b.name for b in found[:8]) + (", ..." if len(found) > 8 else "")
            raise DogbreedError(f"breed {shown} is ambiguous: it could be {names}; say which")
        close = self.suggestions(text)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise DogbreedError(
            f"unknown breed {shown}.{hint} ('dogbreed breeds' lists them; a breed of your own: "
            "'dogbreed breeds add NAME')"
        )

    def matching(self, text: str) -> list[Breed]:
        """Breeds whose key, folder or name contains ``text`` (case and separators ignored)."""
        key = _key(text)
        return [b for b in self.breeds if any(key in _key(alias) for alias in _aliases(b))]

    def suggestions(self, text: str, n: int = 3) -> list[str]:
        """Names of the breeds closest to an unknown name, best first."""
        keys = difflib.get_close_matches(_key(text), list(self._exact), n=n * 3, cutoff=0.5)
        names: list[str] = []
        for k in keys:
            if self._exact[k].name not in names:
                names.append(self._exact[k].name)
        return names[:n]

    def name(self, key: str | None, names: dict[str, str] | None = None) -> str:
        """What to call a breed key: the store's name, else the name the model file carries (``names``), else
        the key itself."""
        if key is None:
            return ""
        breed = self.by_key.get(key)
        if breed is not None:
            return breed.name
        return (names or {}).get(key) or key


STANFORD = Vocabulary()


def find_breed(text: str) -> Breed | None:
    """The Stanford breed named by a WordNet id, folder name or display name, or None."""
    return STANFORD.find(text)


def matching_breeds(text: str) -> list[Breed]:
    return STANFORD.matching(text)


def suggestions(text: str, n: int = 3) -> list[str]:
    return STANFORD.suggestions(text, n)


def resolve_breed(text: str, vocabulary: Vocabulary | None = None) -> Breed:
    """The breed named by ``text`` (exactly, or by a unique prefix or word match), else a one-line error."""
    return (vocabulary or STANFORD).resolve(text)


def breed_from_folder(folder_name: str) -> Breed | None:
    """The breed of a Stanford folder name like ``n02085620-Chihuahua`` (matched by its WordNet id), or None."""
    match = _FOLDER_RE.match(folder_name)
    if match is None:
        return None
    return BY_WNID.get(match.group(1))


def display_name(wnid: str | None, names: dict[str, str] | None = None) -> str:
    """Human name for a stored breed key: Stanford's name, else one given in ``names`` (own breeds, from a model
    file or the store), else the key itself."""
    return STANFORD.name(wnid, names)


# ---------------------------------------------------------------- the user's own breeds


def check_own_name(text: str) -> str:
    """A new breed's name, tidied (spaces collapsed), or a one-line error saying what is wrong with it."""
    name = " ".join(str(text).split())
    if not name:
        raise DogbreedError("a breed name cannot be empty")
    if len(name) > MAX_NAME:
        raise DogbreedError(f"a breed name has at most {MAX_NAME} characters ({len(name)} given)")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in name):
        raise DogbreedError("a breed name cannot contain control or invisible characters")
    if not any(c.isalpha() for c in name):
        raise DogbreedError(f"a breed name needs at least one letter ({name!r} has none)")
    if _FOLDER_RE.match(name) or re.fullmatch(r"n\d{8}", name) or name.casefold().startswith(OWN_PREFIX):
        raise DogbreedError(f"{name!r} looks like a breed key, not a name; give the breed's name")
    return name


def check_note(text: str) -> str | None:
    """A breed's note, tidied (None when blank), or a one-line error."""
    note = " ".join(str(text).split())
    if len(note) > MAX_NOTE:
        raise DogbreedError(f"a breed note has at most {MAX_NOTE} characters ({len(note)} given)")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in note):
        raise DogbreedError("a breed note cannot contain control or invisible characters")
    return note or None


def own_key(name: str, taken: Iterable[str]) -> str:
    """A stable key for a new own breed: ``own:`` and an ASCII slug of its name (a number added if taken)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = "-".join(w for w in re.split(r"[^a-z0-9]+", ascii_name.lower()) if w)[:48].strip("-")
    if not slug:
        slug = "breed-" + hashlib.sha256(name.encode()).hexdigest()[:10]
    used = set(taken)
    key, n = OWN_PREFIX + slug, 2
    while key in used:
        key, n = f"{OWN_PREFIX}{slug}-{n}", n + 1
    return key


def match_key(name: str) -> str:
    """What two names must not share to be different breeds (case and separators ignored)."""
    return _key(name)
