/*
 * storage "s3": the XML S3 speaks, on libxml2. Documents are small (a list
 * page is at most 1000 entries); they are parsed whole, without network
 * access, entity expansion or DTD loading.
 */
#include "s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

struct s3_xml {
    xmlDocPtr doc;
};

s3_xml *s3_xml_parse(const char *buf, size_t len)
{
    if (!buf || len == 0 || len > S3_XML_MAX)
        return NULL;
    xmlDocPtr doc = xmlReadMemory(buf, (int)len, "s3.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                      XML_PARSE_NOBLANKS);
    if (!doc)
        return NULL;
    if (!xmlDocGetRootElement(doc)) {
        xmlFreeDoc(doc);
        return NULL;
    }
    s3_xml *x = malloc(sizeof *x);
    if (!x) {
        xmlFreeDoc(doc);
        return NULL;
    }
    x->doc = doc;
    return x;
}

void s3_xml_free(s3_xml *x)
{
    if (!x)
        return;
    xmlFreeDoc(x->doc);
    free(x);
}

s3_xml_node *s3_xml_root(s3_xml *x)
{
    return (s3_xml_node *)xmlDocGetRootElement(x->doc);
}

const char *s3_xml_name(const s3_xml_node *n)
{
    return n ? (const char *)((const xmlNode *)n)->name : "";
}

s3_xml_node *s3_xml_next(const s3_xml_node *parent, const s3_xml_node *after, const char *name)
{
    if (!parent)
        return NULL;
    const xmlNode *c = after ? ((const xmlNode *)after)->next : ((const xmlNode *)parent)->children;
    for (; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && (!name || strcmp((const char *)c->name, name) == 0))
            return (s3_xml_node *)c;
    return NULL;
}

s3_xml_node *s3_xml_child(const s3_xml_node *n, const char *name)
{
    return s3_xml_next(n, NULL, name);
}

char *s3_xml_strdup(const s3_xml_node *n, const char *name)
{
    const s3_xml_node *c = name ? s3_xml_child(n, name) : n;
    if (!c)
        return NULL;
    xmlChar *t = xmlNodeGetContent((const xmlNode *)c);
    char *s = strdup(t ? (const char *)t : "");
    xmlFree(t);
    if (!s)
        abort();
    return s;
}

int s3_xml_text(const s3_xml_node *n, const char *name, char *buf, size_t len)
{
    if (len)
        buf[0] = 0;
    char *s = s3_xml_strdup(n, name);
    if (!s)
        return 0;
    if (len)
        snprintf(buf, len, "%s", s);
    free(s);
    return 1;
}

int s3_xml_error(const char *buf, size_t len, char *code, size_t clen, char *msg, size_t mlen)
{
    if (clen)
        code[0] = 0;
    if (mlen)
        msg[0] = 0;
    /* Cheap test first: most bodies are not errors. */
    if (!buf || len == 0 || !memmem(buf, len < 512 ? len : 512, "<Error", 6))
        return 0;
    s3_xml *x = s3_xml_parse(buf, len);
    if (!x)
        return 0;
    s3_xml_node *r = s3_xml_root(x);
    int is = strcmp(s3_xml_name(r), "Error") == 0;
    if (is) {
        s3_xml_text(r, "Code", code, clen);
        s3_xml_text(r, "Message", msg, mlen);
    }
    s3_xml_free(x);
    return is;
}

static void add_escaped(s3_str *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            s3_str_adds(out, "&amp;");
            break;
        case '<':
            s3_str_adds(out, "&lt;");
            break;
        case '>':
            s3_str_adds(out, "&gt;");
            break;
        case '"':
            s3_str_adds(out, "&quot;");
            break;
        case '\'':
            s3_str_adds(out, "&apos;");
            break;
        default:
            s3_str_addc(out, *s);
            break;
        }
    }
}

void s3_xml_complete_body(s3_str *out, char (*etags)[80], int nparts)
{
    s3_str_adds(out, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (int i = 0; i < nparts; i++) {
        s3_str_addf(out, "<Part><PartNumber>%d</PartNumber><ETag>", i + 1);
        add_escaped(out, etags[i]);
        s3_str_adds(out, "</ETag></Part>");
    }
    s3_str_adds(out, "</CompleteMultipartUpload>");
}

int64_t s3_parse_iso8601(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int y, mo, d, h, mi, sec;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6)
        return 0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm);
}
