"""Small built-in name lists per locale, with the phone region, time zone and e-mail domains
that go with them. Names keep their own script and accents; e-mail addresses use an ASCII
form of them (transliterated for Russian)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Name:
    native: str
    ascii: str


@dataclass(frozen=True, slots=True)
class Locale:
    code: str
    region: str
    timezone: str
    weight: int
    first_names: tuple[Name, ...]
    last_names: tuple[Name, ...]
    domains: tuple[str, ...]


def _ascii(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _names(text: str) -> tuple[Name, ...]:
    return tuple(Name(n, _ascii(n)) for n in text.split())


def _translit(pairs: str) -> tuple[Name, ...]:
    out = []
    for pair in pairs.split():
        native, latin = pair.split("/")
        out.append(Name(native, latin))
    return tuple(out)


LOCALES: tuple[Locale, ...] = (
    Locale("en-GB", "GB", "Europe/London", 20,
           _names("Oliver George Harry Jack Noah Charlie Thomas James Amelia Olivia Isla Emily "
                  "Ava Sophie Grace Lily Jessica Poppy"),
           _names("Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright "
                  "Thompson Evans Walker White Roberts Green Hall Wood"),
           ("gmail.com", "outlook.com", "btinternet.com", "yahoo.co.uk")),
    Locale("en-US", "US", "America/New_York", 18,
           _names("Liam Noah William James Benjamin Lucas Henry Ethan Emma Olivia Ava Sophia "
                  "Mia Charlotte Amelia Harper Evelyn Abigail"),
           _names("Johnson Miller Davis Garcia Rodriguez Martinez Anderson Thomas Jackson "
                  "Moore Martin Lee Harris Clark Lewis Walker Young Allen"),
           ("gmail.com", "yahoo.com", "outlook.com", "icloud.com")),
    Locale("de-DE", "DE", "Europe/Berlin", 16,
           _names("Lukas Leon Finn Jonas Paul Lüdger Maximilian Felix Jürgen Mia Emma Hannah "
                  "Sophia Lea Lena Anna Marie Käthe"),
           _names("Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann "
                  "Schäfer Koch Bauer Richter Klein Wolf Schröder Neumann"),
           ("gmx.de", "web.de", "t-online.de", "gmail.com")),
    Locale("fr-FR", "FR", "Europe/Paris", 14,
           _names("Gabriel Léo Raphaël Louis Jules Adam Lucas Hugo Arthur Jade Louise Emma "
                  "Alice Chloé Léa Manon Inès Zoé"),
           _names("Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau "
                  "Simon Laurent Lefèbvre Michel Garçon Fournier Girard Bonnet"),
           ("orange.fr", "free.fr", "laposte.net", "gmail.com")),
    Locale("es-ES", "ES", "Europe/Madrid", 12,
           _names("Hugo Martín Lucas Mateo Leo Daniel Alejandro Pablo Álvaro Lucía Sofía "
                  "Martina María Julia Paula Valeria Emma Noelia"),
           _names("García Rodríguez González Fernández López Martínez Sánchez Pérez Gómez "
                  "Martín Jiménez Ruiz Hernández Díaz Moreno Muñoz Álvarez Romero"),
           ("gmail.com", "hotmail.es", "telefonica.net", "yahoo.es")),
    Locale("ru-RU", "RU", "Europe/Moscow", 10,
           _translit("Александр/aleksandr Дмитрий/dmitry Максим/maksim Сергей/sergey "
                     "Андрей/andrey Алексей/aleksey Иван/ivan Михаил/mikhail Анна/anna "
                     "Мария/maria Елена/elena Ольга/olga Наталья/natalya Татьяна/tatyana "
                     "Екатерина/ekaterina Дарья/darya"),
           _translit("Иванов/ivanov Смирнов/smirnov Кузнецов/kuznetsov Попов/popov "
                     "Васильев/vasilyev Петров/petrov Соколов/sokolov Михайлов/mikhaylov "
                     "Новиков/novikov Фёдоров/fedorov Морозов/morozov Волков/volkov "
                     "Алексеев/alekseev Лебедев/lebedev Семёнов/semenov Егоров/egorov"),
           ("yandex.ru", "mail.ru", "gmail.com", "rambler.ru")),
    Locale("it-IT", "IT", "Europe/Rome", 10,
           _names("Leonardo Francesco Alessandro Lorenzo Mattia Andrea Gabriele Tommaso "
                  "Riccardo Sofia Giulia Aurora Alice Ginevra Emma Giorgia Beatrice Niccolò"),
           _names("Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco "
                  "Bruno Gallo Conti DeLuca Mancini Costa Giordano Rizzo"),
           ("libero.it", "virgilio.it", "gmail.com", "tiscali.it")),
)
