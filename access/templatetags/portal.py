from django import template

register = template.Library()


@register.filter
def params(value):
    """125000000 → 125M, 175000000000 → 175B."""
    if not value:
        return "—"
    for unit, size in (("T", 10**12), ("B", 10**9), ("M", 10**6)):
        if value >= size:
            number = value / size
            return f"{number:.1f}".rstrip("0").rstrip(".") + unit
    return str(value)
