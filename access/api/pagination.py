from rest_framework.pagination import PageNumberPagination

from .. import inputs


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_number(self, request, paginator):
        # Anything but a page number is a 404 with a JSON code, as a page past the last one is; never a 500.
        try:
            return inputs.integer(
                request.query_params.get(self.page_query_param) or 1, name="page", low=1, high=inputs.MAX_INT
            )
        except inputs.InputError:
            return "invalid"

    def get_page_size(self, request):
        """`page_size` when given (1 to 2**31 - 1, else a 400), capped at max_page_size."""
        raw = request.query_params.get(self.page_size_query_param)
        if not raw:
            return self.page_size
        return min(inputs.integer(raw, name="page_size", low=1, high=inputs.MAX_INT), self.max_page_size)
