"""A torch in the user site: whether it is the one the environment's Python really imports. Pure."""

from __future__ import annotations

from torchdoctor.service.envs.usersite import UserSiteTorch
from torchdoctor.service.models import Finding, FindingCode, PythonEnv, Severity, TorchBuild


def user_site_finding(env: PythonEnv, site_torch: TorchBuild | None, user: UserSiteTorch) -> Finding:
    """`torch-in-user-site`: warn when the user site's torch is the one imported (it comes first on
    sys.path, or the environment has none of its own), so what `check` judges and `fix` installs
    is not what runs; info when the environment's own torch shadows it."""
    python = f'"{env.python}"' if " " in str(env.python) else str(env.python)
    used = user.imported_first or site_torch is None
    if not used and site_torch is not None:
        return Finding(
            FindingCode.TORCH_IN_USER_SITE,
            f"torch {user.version} in the user site ({user.folder}) is shadowed by torch "
            f"{site_torch.version} in this environment's site-packages, so it is not used.",
            "nothing to do; remove it if no other Python needs it",
            severity_override=Severity.INFO,
        )
    if site_torch is not None:
        message = (
            f"torch {user.version} in the user site ({user.folder}) is what this Python imports: it "
            f"shadows torch {site_torch.version} in site-packages, which torchdoctor checks and fixes."
        )
    else:
        message = (
            f"this Python imports torch {user.version} from the user site ({user.folder}), outside "
            "the environment's site-packages, which is what torchdoctor checks and fixes."
        )
    return Finding(
        FindingCode.TORCH_IN_USER_SITE,
        message,
        f"uninstall the user-site copy (`{python} -m pip uninstall torch torchvision torchaudio` removes "
        "it first, as it comes first), then check again",
    )
