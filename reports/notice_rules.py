"""What a reporters' notice says about each problem, in plain Chinese for the clerk who sent the file.

The wording follows docs/data-quality.md ("What the readers accept, what they reject, and why"): for every
reason code the loader records (`audit.rejected_rows.reason_code`, the start of `audit.load_ledger.error`)
what was wrong and what to do. A code not listed here still gets a notice, with the general advice.
Column names are the ones on the clerks' own templates (the readers' Chinese aliases).
"""

from __future__ import annotations

FEED_NAMES = {"streets": "街道小区台账", "canteens": "社区食堂就餐流水", "assistance": "帮代办点工单事件"}
FEED_FILE_TYPES = {"streets": ".xlsx", "canteens": ".csv", "assistance": ".jsonl"}

STREET_COLUMNS = {
    "compound_code": "小区编码", "name": "小区名称", "community_code": "所属社区", "households": "户数",
    "building_area_m2": "建筑面积(㎡)", "buildings": "楼栋数", "property_mode": "物业服务方式",
    "property_company": "物业企业", "subsidy_start_month": "过渡补贴起始月", "party_org_type": "党组织类型",
    "party_org_since": "党组织成立日期", "owners_committee": "业委会/物管会", "building_heads": "楼栋长数",
    "unit_heads": "单元长数", "service_station": "党群服务站",
}
CANTEEN_COLUMNS = {
    "record_id": "流水号", "canteen_code": "食堂编码", "served_at": "就餐时间", "meal": "餐次",
    "diner_category": "人群类别", "diner_card": "就餐卡号", "age": "年龄", "price_yuan": "实付金额",
    "subsidy_yuan": "补贴金额", "payment_method": "支付方式",
}
POINT_COLUMNS = {
    "service_request_id": "工单号", "point_code": "帮代办点编码", "event": "事件", "event_at": "事件时间",
    "service_code": "事项类别", "channel": "渠道", "compound_code": "小区编码", "handler": "办理人",
    "agency_responsible": "责任部门",
    "people_served": "服务人次", "satisfaction": "满意度", "requester_name": "姓名", "requester_phone": "电话",
    "requester_id_number": "身份证号", "status_notes": "备注",
}
COLUMNS_BY_SOURCE = {"streets": STREET_COLUMNS, "canteens": CANTEEN_COLUMNS, "assistance": POINT_COLUMNS}
COLUMN_NAMES = {**STREET_COLUMNS, **CANTEEN_COLUMNS, **POINT_COLUMNS}

# Never shown, not even hashed: personal fields, and free text (a resident's words may name people).
PERSONAL_COLUMNS = frozenset({"diner_card", "requester_name", "requester_phone", "requester_id_number",
                              "status_notes", "description", "first_name", "last_name", "phone", "email"})
HIDDEN = "（个人信息，已隐去）"

# reason code -> (what was wrong, what to do)
ROW_REASONS: dict[str, tuple[str, str]] = {
    "formula_error": ("单元格显示公式错误（如 #REF!、#N/A、#DIV/0!）",
                      "改正公式（常见原因是引用了已删除的行或工作表），或直接填写数值"),
    "formula_no_value": ("单元格是没有计算结果的公式", "用 Excel 或 WPS 打开文件后重新保存，或直接填写数值"),
    "year_only": ("日期只有年份（如 2019 或 2019年）", "写上月份（如 2019年3月、2019-03）或完整日期"),
    "bad_date": ("不是日期，或不是真实存在的日期（如 2022-02-30）", "按 2022-03-05 或 2022年3月5日 的格式填写日期"),
    "bad_timestamp": ("不是日期和时间", "按 2023-11-06 12:30:00 的格式填写就餐或事件的日期和时间"),
    "missing_value": ("必填内容是空的，或只填了“-”“无”等占位符", "把这一格填写完整"),
    "bad_integer": ("应填整数，填写的不是数字", "只填写数字，不要加文字或单位"),
    "bad_number": ("应填数字，填写的不是数字", "只填写数字，不要加文字或单位"),
    "negative_value": ("数值不能是负数", "填写正确的数值（不小于 0）"),
    "out_of_range": ("数值超出允许的范围（如满意度只能是 1–5）", "按规定范围填写"),
    "bad_enum": ("填写的不是规定的选项之一", "从规定的选项中选择填写（见“怎么改”后面的选项）"),
    "bad_boolean": ("应填“是/否”或“有/无”", "填写 是、否、有 或 无"),
    "bad_code": ("编码格式不对（小区编码 15 位、社区编码 12 位数字）", "核对并改正编码"),
    "unknown_code": ("编码不在本市区划代码中", "核对并改正编码"),
    "wrong_reporter": ("这一行属于其他单位（编码与文件名不一致）", "删除这一行，或改正编码；其他单位的记录由其自行报送"),
    "duplicate_record": ("同一条记录在文件中出现了两次", "只保留一行，删除重复的一行"),
    "bad_encoding": ("这一行有乱码（文字编码不对）", "重新输入这一行，或把整个文件另存为“CSV UTF-8”后重新上传"),
    "bad_character": ("含有看不见的特殊字符（空字符），多由导出出错造成", "重新导出文件"),
    "malformed_json": ("这一行不是完整的记录（格式不完整，可能上传中断）", "重新发送这条记录"),
    "duplicate_key": ("同一字段在一条记录中出现了两次", "每个字段只发送一次"),
    "nested_value": ("一个字段里填了多个值（对象或数组）", "每个字段只填一个值"),
    "json_too_deep": ("记录的嵌套层数过多", "请系统维护人员修正导出程序"),
    "line_too_long": ("这一行过长（超过 1 MiB）", "请系统维护人员修正导出程序"),
}
ENUM_CHOICES = {
    "property_mode": "市场化物业、红色物业帮建、驻地单位协建、财政补贴过渡、社区兜底、单位自管、无",
    "meal": "早、午、晚", "diner_category": "老年人、儿童、残疾人、居民",
    "payment_method": "微信、支付宝、现金、就餐卡", "party_org_type": "党支部、党小组、联合党支部、无",
    "owners_committee": "业委会、物管会、无",
    "event": "received、dispatched、resolved、escalated、dept_resolved、closed、reopened",
}

# reason code of a quarantined file (整个文件未导入) -> (what was wrong, what to do)
FILE_REASONS: dict[str, tuple[str, str]] = {
    "unreadable_workbook": ("不是可以读取的 Excel 工作簿（上传中断、.xls/.et 改了扩展名、设置了密码或文件损坏）",
                            "在 Excel 中另存为“Excel 工作簿 (.xlsx)”，不要设置密码，然后重新上传"),
    "workbook_too_large": ("工作簿过大（多半是粘贴了图片或附件）", "删除图片和附件后保存，重新上传"),
    "no_header": ("前 60 行里找不到台账的表头", "核对表头（列名）是否正确，并放在表格顶部"),
    "missing_columns": ("缺少必填列（小区编码、小区名称、物业服务方式）", "补上这一列，或改正列名"),
    "bad_merged_cells": ("合并单元格过多或互相重叠", "取消合并单元格后重新保存"),
    "too_many_sheets": ("工作表超过 200 个", "只上传台账工作表"),
    "bad_encoding": ("文件编码无法识别（如 Excel 的“Unicode 文本”导出，或把其他文件改成了这个扩展名）",
                     "在 Excel 中选择“另存为 → CSV UTF-8（逗号分隔）(*.csv)”，然后重新上传"),
    "line_too_long": ("文件中有一行过长（超过 1 MiB）", "重新导出文件"),
    "bad_csv": ("文件中有单元格过长，不是正常的流水文件", "重新导出文件"),
    "malformed_json_file": ("文件不是完整的 JSON（数组被截断或格式错误）", "改用每行一条记录（JSON Lines）重新发送"),
    "json_file_too_large": ("JSON 数组文件超过 8 MiB", "改用每行一条记录（JSON Lines）发送"),
    "copy_file_name": ("文件名是副本或改过的名字（如“(1)”“_副本”）", "用本单位编码作为文件名重新上传"),
    "unknown_reporter": ("文件名不是本单位的编码", "用本单位编码作为文件名重新上传"),
    "wrong_file_type": ("文件类型不对", "食堂上传 .csv，街道上传 .xlsx，帮代办点上传 .jsonl"),
    "name_not_utf8": ("文件名含有无法识别的字符", "把文件改名为本单位编码后重新上传"),
    "symlink": ("上传的是快捷方式（链接），不是文件本身", "上传文件本身"),
    "not_a_file": ("上传的不是文件（如与文件同名的文件夹）", "上传文件本身"),
    "empty_file": ("文件是空的（连表头都没有）", "重新上传完整的文件"),
}

# a held file (暂未入库): reason code -> what the check found
HELD_REASONS = {
    "shrunk_redelivery": "这次上传的文件比当天已入库的版本少了一半以上的记录（或是空文件）",
    "doubled_file": "文件中三分之一以上的记录重复出现（可能导出或粘贴了两次）",
    "out_of_band": "记录数与本单位平时每天的数量相差很大",
}
HELD_ADVICE = ("原来已入库的版本继续使用。数据管理员会核实后决定是否导入；"
               "如果这个文件有误，请改正后重新上传完整的文件")
GENERAL_ADVICE = "请核对后重新上传；如有疑问，请联系区数据管理员"


def row_problem(reason_code: str, column: str | None) -> tuple[str, str]:
    """(what was wrong, what to do) for one rejected row."""
    wrong, todo = ROW_REASONS.get(reason_code, ("这一行无法使用", GENERAL_ADVICE))
    if reason_code == "bad_enum" and column in ENUM_CHOICES:
        todo = f"只能填写：{ENUM_CHOICES[column]}"
    return wrong, todo


def file_problem(status: str, error: str | None) -> tuple[str, str]:
    """(what was wrong, what to do) for a quarantined or held file, from its ledger `error`."""
    code = (error or "").split(":", 1)[0].strip()
    if status == "held":
        return HELD_REASONS.get(code, "文件整体看起来不正常"), HELD_ADVICE
    return FILE_REASONS.get(code, ("文件无法读取", GENERAL_ADVICE))


def reason_of(status: str, error: str | None) -> str:
    """The reason code of a quarantined or held file (the start of its ledger `error`)."""
    return (error or "").split(":", 1)[0].strip() or status


def column_name(column: str | None) -> str:
    return COLUMN_NAMES.get(column or "", column or "")


def shown_value(column: str | None, value: object) -> str:
    """A cell as the notice may show it: personal fields, keyed hashes and free text never appear."""
    if value is None or column is None:
        return ""
    text = str(value)
    if column in PERSONAL_COLUMNS or text.startswith("hmac:"):
        return HIDDEN
    return text
