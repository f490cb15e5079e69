from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_number(self, request, paginator):
        # An absurd page number is a 404 with a JSON code, never a 500.
        number = request.query_params.get(self.page_query_param) or 1
        return number if str(number).isdigit() and len(str(number)) < 10 else "invalid"
