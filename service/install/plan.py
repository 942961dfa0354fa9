"""Making a plan for one environment: ask its interpreter for its tags, ask the index what it
publishes, then let the pure policy in `policy.py` decide."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.tags import Tag

from torchdoctor.service.envs.builds import BuildReading, read_build
from torchdoctor.service.envs.tags import interpreter_facts, tags_for
from torchdoctor.service.errors import TorchdoctorError
from torchdoctor.service.facts.knowledge import Knowledge
from torchdoctor.service.install.index import IndexClient, IndexFile, compatible
from torchdoctor.service.install.metadata import MetadataReader, admits
from torchdoctor.service.install.policy import (
    COMPANIONS,
    Choice,
    Plan,
    PlanRefusedError,
    Published,
    build_plan,
    candidate_variants,
    choose_companions,
    choose_torch,
    companion_order,
    cpu_choice_hint,
)
from torchdoctor.service.models import Hardware, PythonEnv
from torchdoctor.service.rules.diagnose import pip_command, target_pins

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Target:
    """What the plan needs to know about the environment it is for."""

    env: PythonEnv
    tags: tuple[Tag, ...]
    python_version: str
    installed: BuildReading | None


def inspect_target(env: PythonEnv, knowledge: Knowledge) -> Target:
    """Runs the environment's interpreter once (with a timeout) for its wheel tags."""
    facts = interpreter_facts(env.python)
    return Target(env, tuple(tags_for(facts)), facts.python_version, read_build(env, knowledge))


def _fetch(
    client: IndexClient, target: Target, variants: Sequence[str], projects: Sequence[str]
) -> Published:
    """Pages are fetched concurrently: a cold plan asks for several variants' torch pages."""
    jobs = [(v, p) for v in variants for p in projects]

    def one(job: tuple[str, str]) -> tuple[str, str, tuple[IndexFile, ...]]:
        variant, project = job
        files = compatible(client.list_files(variant, project), target.tags, target.python_version)
        return variant, project, files

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(jobs)))) as pool:
        results = list(pool.map(one, jobs))
    files: dict[str, dict[str, tuple[IndexFile, ...]]] = {}
    for variant, project, found in results:
        files.setdefault(variant, {})[project] = found
    return Published(files)


def make_plan(
    target: Target,
    hardware: Hardware,
    knowledge: Knowledge,
    client: IndexClient,
    *,
    index_base: str,
    progress: Progress | None = None,
) -> Plan:
    """Raises PlanRefusedError when nothing fits and IndexUnreachableError when offline."""
    say = progress or (lambda _msg: None)
    variants = ("cpu",) if not hardware.has_nvidia_gpu else candidate_variants(knowledge, hardware)
    say(f"asking {index_base} for torch builds: {', '.join(variants)}")
    published = _fetch(client, target, variants, ("torch",))
    # Every torch page missing is a wrong --index-base, not "nothing fits": say the 404 and the URL.
    client.raise_if_all_missing()
    try:
        choice = choose_torch(
            installed=target.installed,
            hardware=hardware,
            knowledge=knowledge,
            published=published,
            tags=target.tags,
            platform=target.env.platform,
        )
    except PlanRefusedError as exc:
        if hardware.has_nvidia_gpu and exc.hint is not None and "CPU build" in exc.hint:
            exc.hint = cpu_choice_hint(_cpu_command(target, knowledge, client, index_base), index_base)
        raise
    wanted = [p for p in COMPANIONS if target.installed and getattr(target.installed, p) is not None]
    declared: dict[str, SpecifierSet] = {}
    reader = MetadataReader(client)
    if wanted:
        say(f"asking for {' and '.join(wanted)} on {choice.variant}")
        published = _fetch(client, target, (choice.variant,), wanted)
        declared = _declared(reader, choice, published, wanted, target.tags)
    companions, notes = choose_companions(
        choice=choice,
        installed=target.installed,
        knowledge=knowledge,
        published=published,
        tags=target.tags,
        declared=declared,
    )
    unread = reader.notes
    if unread:
        notes = (
            *notes,
            f"the index did not say which torch {len(unread)} companion wheel(s) require, so "
            f"torchdoctor's data paired them ({unread[0]})",
        )
    return build_plan(
        environment=target.env.root,
        choice=choice,
        companions=companions,
        notes=(*notes, *client.notes),
        index_base=index_base,
        installed=target.installed,
    )


def _declared(
    reader: MetadataReader,
    choice: Choice,
    published: Published,
    projects: Sequence[str],
    tags: Sequence[Tag],
) -> dict[str, SpecifierSet]:
    """What companion wheels require of torch, read newest first until one admits the chosen torch
    (the policy takes the newest that does, so older ones need not be read). Projects are read
    concurrently; where one wheel's requirement cannot be read, none of its project's count."""
    torch_version = choice.file.public_version

    def one(project: str) -> dict[str, SpecifierSet]:
        found: dict[str, SpecifierSet] = {}
        for file in companion_order(choice, published, project, tags):
            metadata = reader.read(file)
            spec = metadata.requirement_on("torch") if metadata is not None else None
            if spec is None:
                # Unreadable, or a wheel that names no torch: half an answer could skip the right
                # release, so the data pairs this project.
                return {}
            found[file.url] = spec
            if admits(spec, torch_version):
                break
        return found

    declared: dict[str, SpecifierSet] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(projects))) as pool:
        for found in pool.map(one, projects):
            declared.update(found)
    return declared


def _cpu_command(target: Target, knowledge: Knowledge, client: IndexClient, index_base: str) -> str | None:
    """The exact command for the CPU build a refusal offers: the installed release's CPU build
    (else the newest the index has), with the companions the environment has, all pinned.
    None when a version cannot be pinned or the index cannot say."""
    installed = target.installed
    version = installed.build.release if installed is not None else None
    if version is None:
        try:
            files = _fetch(client, target, ("cpu",), ("torch",)).of("cpu", "torch")
        except TorchdoctorError:
            return None
        finals = (f.public_version for f in files if f.local == "cpu" and not f.version.is_prerelease)
        versions = sorted(finals, reverse=True)
        if not versions:
            return None
        version = str(versions[0])
    pins = target_pins(knowledge, installed, version, "cpu")
    if pins is None:
        return None
    return pip_command(target.env, pins, f"{index_base.rstrip('/')}/cpu")
