from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from wardenproject.ids import public_id


def new_user_id() -> str:
    return public_id("usr")


def new_org_id() -> str:
    return public_id("org")


def new_invitation_id() -> str:
    return public_id("inv")


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: object) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Keyed by email; belongs to organisations through memberships."""

    public_id = models.CharField(max_length=32, unique=True, default=new_user_id, editable=False)
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    current_organization = models.ForeignKey(
        "accounts.Organization",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The organisation the user is working in now.",
    )
    notify_approvals = models.BooleanField(
        default=True, help_text="Email me when an approval request needs a decision."
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email


class Plan(models.Model):
    """A subscription plan: feature flags and limits. Seeded by a data migration."""

    class Slug(models.TextChoices):
        FREE = "free", "Free"
        PRO = "pro", "Pro"
        BUSINESS = "business", "Business"
        ENTERPRISE = "enterprise", "Enterprise"

    slug = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=64)
    rank = models.PositiveSmallIntegerField(
        unique=True, help_text="Order of plans: a higher rank includes what lower ranks have."
    )
    monthly_price_usd = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    # Feature flags
    approval_workflows = models.BooleanField(default=False)
    webhooks = models.BooleanField(default=False)
    approval_quorum = models.BooleanField(default=False)
    # Limits: empty means unlimited
    max_agents = models.PositiveIntegerField(null=True, blank=True)
    max_rules_per_agent = models.PositiveIntegerField(null=True, blank=True)
    audit_retention_days = models.PositiveIntegerField(null=True, blank=True)
    api_requests_per_minute = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return self.name


class Organization(models.Model):
    """A tenant. Every agent, rule, key, approval and webhook belongs to exactly one."""

    public_id = models.CharField(max_length=32, unique=True, default=new_org_id, editable=False)
    name = models.CharField(max_length=120)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="organizations")
    default_approval_timeout = models.PositiveIntegerField(
        default=3600, help_text="Seconds an approval request waits before it expires."
    )
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="IANA time zone (Europe/Paris) in which rules read $time.hour and $time.weekday.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="organizations"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        APPROVER = "approver", "Approver"
        VIEWER = "viewer", "Viewer"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="one_membership_per_org")
        ]
        ordering = ["organization", "user"]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class Invitation(models.Model):
    """An email invitation. The link carries a signed token; it is single-use and expires."""

    public_id = models.CharField(
        max_length=32, unique=True, default=new_invitation_id, editable=False
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.EmailField()
    role = models.CharField(
        max_length=16, choices=Membership.Role.choices, default=Membership.Role.VIEWER
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization}"


def new_group_id() -> str:
    return public_id("grp")


class MemberGroup(models.Model):
    """A named set of an organisation's members (``group:finance`` in a rule's approvers).

    Managed by owners and admins. Being in a group gives no right by itself: a rule that
    routes its approvals to a group admits the group's members whose role may decide.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_group_id, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="member_groups"
    )
    name = models.CharField(max_length=64)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="member_groups"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), "organization", name="one_group_name_per_org")
        ]

    def __str__(self) -> str:
        return self.name
